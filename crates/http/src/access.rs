//! The access decision for one repository name: resolve where it lives (hosted here or at an
//! upstream, DESIGN §3) and what the subject may do there. Hosted repositories follow the
//! directory's rules; upstream images may be pulled (never pushed) by signed-in users, and by
//! anonymous callers only when the configuration allows it. The token endpoint and every `/v2`
//! request use this one function.

use oci::RepoName;
use oci::source::{Source, resolve};
use portcullis_core::authz::{Actions, Snapshot, Subject};

use crate::AppState;

pub fn decide(
    st: &AppState,
    snap: &Snapshot,
    subject: &Subject,
    name: &RepoName,
    ns: Option<&str>,
    host: Option<&str>,
) -> Result<(Source, Actions), oci::WireError> {
    let source = resolve(name, ns, host, |n| snap.namespace(n).is_some())?;
    let actions = match &source {
        Source::Hosted(n) => snap.permitted(subject, n),
        Source::Upstream(_) => match subject {
            Subject::User(_) => Actions::PULL,
            Subject::Anonymous if st.proxy_anonymous => Actions::PULL,
            Subject::Anonymous => Actions::NONE,
        },
    };
    Ok((source, actions))
}
