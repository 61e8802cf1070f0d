//! Identity provider adapters: the OpenID Connect relying party (`oidc`) and LDAP password
//! sign-in (`ldap`, implementing `portcullis_core::ports::PasswordDirectory`). They turn a provider's
//! answer into who signed in; what that person may do is decided in core (`core::sso` makes the
//! account and its team memberships, the gate decides pulls).

pub mod ldap;
pub mod oidc;
