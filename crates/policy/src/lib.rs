//! Image Access Management, pure: which category an image is for an organization, the
//! organization's settings (Docker Hub's `restricted_images` shape plus our fields, Registry
//! Access Management), exceptions, and the one decision function
//! [`decide`]`(subject, image, snapshot, now)`. No IO, no async, no clock.
//!
//! Rule: for every org the subject belongs to whose restrictions are on and whose `owners`
//! team the subject is not in, the image must be allowed by that org — by its categories,
//! widened by the rules of the subject's teams there, or by an exception; any such org denying
//! denies (in dry-run mode it would deny: the image is served with a warning). Signature
//! rules (`signatures`) say which images of those orgs must also carry a signature by given
//! keys; which rules apply is decided here, the signatures are verified by the gate. Workload
//! rules (`workloads`) say which workload identities are members of which teams.

mod decide;
mod model;
mod signatures;
#[cfg(any(test, feature = "proptest"))]
pub mod strategies;
mod workloads;

pub use decide::{Decision, Effect, Rule, TraceStep, categorize, decide, explain};
pub use model::*;
pub use signatures::{
    MAX_RULE_KEYS, MAX_SIGNATURE_RULES, RULE_CATEGORIES, Requirement, SignatureRule, Signatures, required,
};
pub use workloads::{CLAIMS as WORKLOAD_CLAIMS, WorkloadRule, Workloads, glob};
