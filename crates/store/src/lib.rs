//! Storage adapters: `SqliteMeta` implements `pcore::ports::MetaStore`, `FsBlobs` implements
//! `pcore::ports::BlobStore`. The `testsuite` module holds the one suite every adapter of a
//! port must pass; each adapter's tests run it.

pub mod fs;
pub mod migrate;
pub mod sqlite;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;

pub use fs::FsBlobs;
pub use sqlite::SqliteMeta;
