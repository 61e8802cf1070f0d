//! Serving what the gate granted, where serving depends on the decision: the manifest a pull
//! was decided on (and its audit entry, written once it is read, with the digest served — as
//! distribution's notification bridge wraps the repository), and the catalog, filtered by the
//! same permissions the gate applies to every request.

use oci::endpoint::Page;
use oci::{Endpoint, ErrorCode, Reference, RepoName};

use super::{Gate, Grant};
use crate::authz::Subject;
use crate::content::ServedManifest;
use crate::error::{Error, Result};

impl Gate {
    /// The manifest a granted GET or HEAD serves: the one the gate read to decide, else the
    /// digest it resolved the tag to, else the reference asked for. Audited once read.
    pub async fn manifest(&self, grant: &Grant) -> Result<ServedManifest> {
        let (Endpoint::Manifest { reference, .. }, Some(source)) = (&grant.endpoint, &grant.source) else {
            return Err(Error::registry(ErrorCode::Unsupported, "not a manifest request"));
        };
        let content = self.contents.of(source);
        let m = match (&grant.manifest, &grant.digest) {
            (Some(m), _) => m.clone(),
            (None, Some(d)) => content.manifest(source, &Reference::Digest(d.clone())).await?,
            (None, None) => content.manifest(source, reference).await?,
        };
        self.served(grant, Some(m.digest.to_string())).await;
        Ok(m)
    }

    /// Repositories `subject` may pull, sorted, paginated: (names, whether more follow).
    pub fn catalog(&self, subject: &Subject, page: &Page) -> (Vec<String>, bool) {
        let snap = self.identity.directory().snapshot();
        let mut names: Vec<&String> = snap
            .repo_names()
            .filter(|n| page.last.as_ref().is_none_or(|l| n.as_str() > l.as_str()))
            .filter(|n| n.parse::<RepoName>().is_ok_and(|r| snap.permitted(subject, &r).pull))
            .collect();
        names.sort();
        let n = page.n.unwrap_or(usize::MAX);
        let more = names.len() > n;
        (names.into_iter().take(n).cloned().collect(), more)
    }
}
