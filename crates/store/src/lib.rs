//! Storage adapters: `SqliteMeta` and `PgMeta` implement `portcullis_core::ports::MetaStore` (every
//! capability port, with the same SQL: `sql/`, one module per capability), `FsBlobs` and `S3Blobs` implement `portcullis_core::ports::BlobStore`, each
//! through `measured_impl!` (`measure.rs`), which times every operation. The `testsuite`
//! module holds the one suite every adapter of a port must pass; each adapter's tests run it.
//! `backup` takes and restores backups of an embedded instance.

#[macro_use]
mod measure;
#[macro_use]
mod sql;
#[macro_use]
pub mod migrate;
mod announce;
pub mod backup;
pub mod copy;
pub mod fs;
pub mod postgres;
pub mod s3;
pub mod sqlite;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;

pub use fs::FsBlobs;
pub use postgres::PgMeta;
pub use s3::{S3Blobs, S3Config};
pub use sqlite::SqliteMeta;
