//! In-memory adapters of the ports (`MemoryMeta`, `MemoryBlobs`, `MemoryUpstream`), for fast tests of the
//! services without a database or a disk. They live here rather than in `portcullis-store` so
//! that this crate's own unit tests can use them (a dev-dependency on the store crate would be
//! a second copy of this crate's types); `portcullis-store` runs its shared suites against them
//! like against every other adapter. Compiled for tests and with the `memory` feature.

mod blobs;
mod meta;
mod upstream;

pub use blobs::MemoryBlobs;
pub use meta::MemoryMeta;
pub use upstream::{Calls, MemoryUpstream};
