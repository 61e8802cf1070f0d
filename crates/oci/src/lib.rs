//! Pure OCI distribution vocabulary: digests, repository names, references, the wire error
//! table, request parsing into an [`Endpoint`], HTTP ranges and manifest inspection.
//!
//! No IO, no async, no HTTP framework: everything here is a function of its inputs, so it is
//! covered by table and property tests and is safe to fuzz.

pub mod digest;
pub mod endpoint;
pub mod error;
pub mod manifest;
pub mod name;
pub mod range;
pub mod source;

pub use digest::{Algorithm, Digest};
pub use endpoint::{Action, Endpoint, Method};
pub use error::{ErrorCode, WireError};
pub use manifest::{Descriptor, Manifest, ManifestKind};
pub use name::{Reference, RepoName, Tag};
