//! The signature requirements on the *Org permissions* page: the org's rules (which images,
//! which keys, enforce or dry run), a form to add one — through the impact preview, as any
//! stricter setting — and a button to remove one. Members see the rules read-only.

use axum::extract::Path;
use policy::{Mode, SignatureRule, Signatures};
use serde::Deserialize;

use super::permissions::{Impact, page_of};
use super::{Posted, St, UiResult, done, ok};
use portcullis_core::signatures::keys;

/// A rule as the page lists it.
pub struct RuleView {
    pub(super) n: usize,
    pub(super) images: String,
    pub(super) keys: String,
    pub(super) identity: String,
    pub(super) dry_run: bool,
}

pub fn views(s: &Signatures) -> Vec<RuleView> {
    s.rules
        .iter()
        .enumerate()
        .map(|(i, r)| RuleView {
            n: i + 1,
            images: r.images.clone(),
            keys: keys::ids(&r.keys),
            identity: r.identity.clone().unwrap_or_default(),
            dry_run: r.mode == Mode::DryRun,
        })
        .collect()
}

/// The add-a-rule form (also re-sent, hidden, by "Add anyway" after the impact preview).
#[derive(Debug, Clone, Deserialize)]
pub struct RuleForm {
    pub images: String,
    /// One or more PEM public keys.
    pub keys: String,
    #[serde(default)]
    pub identity: String,
    #[serde(default)]
    pub mode: String,
    /// The rules JSON whose impact the owner has seen.
    #[serde(default)]
    pub confirmed: Option<String>,
}

impl RuleForm {
    fn rule(&self) -> Result<SignatureRule, portcullis_core::Error> {
        const END: &str = "-----END PUBLIC KEY-----";
        let keys = self.keys.split_inclusive(END).map(str::trim).filter(|k| !k.is_empty()).map(str::to_owned).collect();
        let mode = match self.mode.as_str() {
            "" | "enforce" => Mode::Enforce,
            "dry_run" => Mode::DryRun,
            m => return Err(portcullis_core::Error::Invalid(format!("unknown mode {m:?}; use enforce or dry_run"))),
        };
        let identity = Some(self.identity.trim().to_owned()).filter(|i| !i.is_empty());
        Ok(SignatureRule { images: self.images.trim().to_owned(), keys, identity, mode })
    }
}

pub async fn add(axum::extract::State(st): St, Path(org): Path<String>, p: Posted<RuleForm>) -> UiResult {
    let (c, f) = (p.c, p.form);
    let mut rules = st.iam.settings(&c.who, &org).await?.signatures.rules;
    rules.push(f.rule()?);
    let changes = serde_json::json!({ "signatures": { "rules": rules } });
    let preview = st.iam.preview(&c.who, &org, &changes).await?;
    let proposed = preview.proposed.clone();
    let mut impact = Impact::of(preview, changes.to_string(), "signature-rules");
    if !impact.rows.is_empty() && f.confirmed.as_deref() != Some(impact.confirm.as_str()) {
        impact.rule = Some(f);
        return ok(&page_of(&st, &c, &org, Some((&proposed, impact))).await?);
    }
    st.iam.set_settings(&c.who, &org, &changes).await?;
    done(&format!("/orgs/{org}/permissions"), "signature-rule-added")
}

/// Removes rule `n` (counted from 1). Removing a requirement only allows more: no preview.
pub async fn delete(
    axum::extract::State(st): St,
    Path((org, n)): Path<(String, usize)>,
    p: Posted<super::session::Empty>,
) -> UiResult {
    let mut rules = st.iam.settings(&p.c.who, &org).await?.signatures.rules;
    if n == 0 || n > rules.len() {
        return Err(portcullis_core::Error::NotFound(format!("{org} has no signature rule {n}")).into());
    }
    rules.remove(n - 1);
    st.iam.set_settings(&p.c.who, &org, &serde_json::json!({ "signatures": { "rules": rules } })).await?;
    done(&format!("/orgs/{org}/permissions"), "signature-rule-removed")
}
