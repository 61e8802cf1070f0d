//! LDAP / Active Directory password sign-in, on `ldap3`: bind as the service account, find the
//! one entry `user_filter` selects for the name (the name escaped as RFC 4515 requires, so
//! `*)(uid=*` matches nothing), bind as that entry with the password (never an empty one: that
//! would be an unauthenticated bind, which servers accept), then read the names of the groups
//! `group_filter` selects. `ldaps://`, or StartTLS on `ldap://` (on unless turned off), verified
//! against the system's or a given CA. Every connection has a bounded wait.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry, ldap_escape};
use portcullis_core::error::{Error, Result};
use portcullis_core::ports::PasswordDirectory;
use portcullis_core::sso::ExternalIdentity;

/// `[auth.ldap]`, resolved.
#[derive(Debug, Clone)]
pub struct LdapSettings {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    /// StartTLS on an `ldap://` URL.
    pub starttls: bool,
    pub bind_dn: String,
    pub bind_password: String,
    pub user_base: String,
    /// With `{username}`, e.g. `(&(objectClass=inetOrgPerson)(uid={username}))`.
    pub user_filter: String,
    /// The attribute that names the account here.
    pub username_attribute: String,
    pub group_base: String,
    /// With `{dn}` (the user's entry) or `{username}`, e.g. `(member={dn})`.
    pub group_filter: String,
    pub group_name_attribute: String,
    /// PEM CA certificates to verify the server with (default: the system's).
    pub ca_pem: Option<Vec<u8>>,
    pub timeout: Duration,
}

pub struct Ldap {
    settings: LdapSettings,
    tls: Arc<rustls::ClientConfig>,
}

fn unavailable(e: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("the LDAP directory cannot be reached: {e}"))
}

impl Ldap {
    pub fn new(settings: LdapSettings) -> Result<Ldap> {
        if !settings.url.starts_with("ldap://") && !settings.url.starts_with("ldaps://") {
            return Err(Error::Invalid("auth.ldap.url must be ldap://… or ldaps://…".into()));
        }
        if !settings.user_filter.contains("{username}") {
            return Err(Error::Invalid("auth.ldap.user_filter must contain {username}".into()));
        }
        let mut roots = rustls::RootCertStore::empty();
        match &settings.ca_pem {
            Some(pem) => {
                for c in rustls_pki_types::pem::PemObject::pem_slice_iter(pem) {
                    let c: rustls_pki_types::CertificateDer =
                        c.map_err(|e| Error::Invalid(format!("auth.ldap.ca_file: {e}")))?;
                    roots.add(c).map_err(|e| Error::Invalid(format!("auth.ldap.ca_file: {e}")))?;
                }
            }
            None => {
                for c in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(c);
                }
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Invalid(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Ldap { settings, tls: Arc::new(tls) })
    }

    async fn connect(&self) -> Result<ldap3::Ldap> {
        let s = &self.settings;
        let conn = LdapConnSettings::new()
            .set_conn_timeout(s.timeout)
            .set_starttls(s.starttls && s.url.starts_with("ldap://"))
            .set_config(self.tls.clone());
        let (conn, mut ldap) = LdapConnAsync::with_settings(conn, &s.url).await.map_err(unavailable)?;
        ldap3::drive!(conn);
        ldap.with_timeout(s.timeout);
        Ok(ldap)
    }
}

#[async_trait]
impl PasswordDirectory for Ldap {
    async fn verify(&self, username: &str, password: &str) -> Result<Option<ExternalIdentity>> {
        if username.is_empty() || username.len() > 256 || password.is_empty() {
            return Ok(None);
        }
        let s = &self.settings;
        let mut ldap = self.connect().await?;
        ldap.simple_bind(&s.bind_dn, &s.bind_password)
            .await
            .and_then(|r| r.success())
            .map_err(|e| unavailable(format!("the service account cannot bind: {e}")))?;
        let filter = s.user_filter.replace("{username}", &ldap_escape(username));
        let attrs = vec![s.username_attribute.as_str()];
        let (entries, _) = ldap
            .search(&s.user_base, Scope::Subtree, &filter, attrs)
            .await
            .and_then(|r| r.success())
            .map_err(unavailable)?;
        if entries.len() != 1 {
            let _ = ldap.unbind().await;
            return Ok(None);
        }
        let entry = SearchEntry::construct(entries.into_iter().next().expect("one entry"));
        let name = entry.attrs.get(&s.username_attribute).and_then(|v| v.first()).cloned();
        let Some(name) = name else {
            let _ = ldap.unbind().await;
            return Ok(None);
        };
        let bound = ldap.simple_bind(&entry.dn, password).await.map_err(unavailable)?;
        if bound.rc != 0 {
            let _ = ldap.unbind().await;
            return Ok(None);
        }
        // Groups are read as the service account (users often may not search groups).
        ldap.simple_bind(&s.bind_dn, &s.bind_password).await.and_then(|r| r.success()).map_err(unavailable)?;
        let filter = s.group_filter.replace("{dn}", &ldap_escape(&entry.dn)).replace("{username}", &ldap_escape(&name));
        let (groups, _) = ldap
            .search(&s.group_base, Scope::Subtree, &filter, vec![s.group_name_attribute.as_str()])
            .await
            .and_then(|r| r.success())
            .map_err(unavailable)?;
        let _ = ldap.unbind().await;
        let groups = groups
            .into_iter()
            .filter_map(|g| {
                SearchEntry::construct(g).attrs.get(&s.group_name_attribute).and_then(|v| v.first()).cloned()
            })
            .collect();
        Ok(Some(ExternalIdentity {
            source: policy::Provider::Ldap,
            external_id: entry.dn,
            username: name.to_ascii_lowercase(),
            groups,
        }))
    }
}
