//! Identity provider adapters: the OpenID Connect relying party (`oidc`), LDAP password
//! sign-in (`ldap`, implementing `portcullis_core::ports::PasswordDirectory`) and the trusted
//! workload token issuers (`workload`, implementing `portcullis_core::ports::WorkloadVerifier`).
//! They turn a provider's answer into who signed in; what that identity may do is decided in
//! core (`core::sso` and `core::workloads` make the account and its team memberships, the gate
//! decides pulls).

pub mod ldap;
pub mod oidc;
pub mod workload;
