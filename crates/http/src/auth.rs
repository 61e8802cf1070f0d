//! Credentials from requests: `Authorization` parsing, the caller's address, the Bearer
//! challenge, and the `ApiUser` extractor of the admin API (Basic with a password or access
//! token, or `Bearer <access token>`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use base64::Engine;
use portcullis_core::Error;
use portcullis_core::authz::Principal;

use crate::AppState;
use crate::error::{ApiError, Challenge};

/// What the `Authorization` header carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    None,
    Basic(String, String),
    Bearer(String),
}

/// Parses `Authorization`; a header that is present but malformed is an error.
pub fn credentials(headers: &HeaderMap) -> Result<Credentials, Error> {
    let Some(v) = headers.get(axum::http::header::AUTHORIZATION) else { return Ok(Credentials::None) };
    let bad = || Error::Unauthenticated("malformed Authorization header".into());
    let v = v.to_str().map_err(|_| bad())?.trim();
    let (scheme, rest) = v.split_once(' ').ok_or_else(bad)?;
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => {
            let raw = base64::engine::general_purpose::STANDARD.decode(rest.trim()).map_err(|_| bad())?;
            let s = String::from_utf8(raw).map_err(|_| bad())?;
            let (u, p) = s.split_once(':').ok_or_else(bad)?;
            Ok(Credentials::Basic(u.to_owned(), p.to_owned()))
        }
        "bearer" => Ok(Credentials::Bearer(rest.trim().to_owned())),
        _ => Err(bad()),
    }
}

/// The caller's address, for throttling and logs: the connection's peer, unless that is one of
/// the configured trusted proxies — then the nearest address in `X-Forwarded-For` that is not
/// one of them. `X-Forwarded-For` from anyone else is ignored (it is the client's to forge).
pub fn client_addr(st: &AppState, parts: &Parts) -> String {
    client_ip(&st.trusted_proxies, &parts.headers, parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()))
}

/// [`client_addr`] from its parts.
pub fn client_ip(trusted: &[ipnet::IpNet], headers: &HeaderMap, peer: Option<std::net::IpAddr>) -> String {
    let Some(peer) = peer else { return "unknown".into() };
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer.to_string();
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
        .collect::<Vec<_>>();
    forwarded.into_iter().rev().find(|ip| !is_trusted(ip)).unwrap_or(peer).to_string()
}

/// The base URL of this server as clients see it.
pub fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(u) = &state.public_url {
        return u.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)))
        .unwrap_or("localhost");
    format!("{}://{host}", if state.tls { "https" } else { "http" })
}

/// `Bearer realm="<base>/token",service="<service>"[,scope="..."][,error="..."]`.
pub fn challenge(state: &AppState, headers: &HeaderMap, scope: Option<&str>, error: Option<&str>) -> Challenge {
    let mut c = format!("Bearer realm=\"{}/token\",service=\"{}\"", base_url(state, headers), state.tokens.service());
    if let Some(s) = scope {
        c.push_str(&format!(",scope=\"{s}\""));
    }
    if let Some(e) = error {
        c.push_str(&format!(",error=\"{e}\""));
    }
    Challenge(c)
}

/// A signed-in caller of the admin API.
pub struct ApiUser(pub Principal);

impl FromRequestParts<Arc<AppState>> for ApiUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let client = client_addr(state, parts);
        state.catch_up().await?;
        let who = match credentials(&parts.headers)? {
            Credentials::Basic(u, p) => state.identity.authenticate(&u, &p, &client).await?,
            Credentials::Bearer(t) => state.identity.authenticate_token(&t, &client).await?,
            Credentials::None => {
                return Err(ApiError(Error::Unauthenticated(
                    "sign in with Basic credentials or a Bearer access token".into(),
                )));
            }
        };
        // A robot's token is for registry clients (`/token`), not for the API.
        if portcullis_core::robots::org_of(&who.username).is_some() {
            return Err(ApiError(Error::Denied("a robot's token opens no API: it is for registry clients".into())));
        }
        Ok(ApiUser(who))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(axum::http::header::AUTHORIZATION, v.parse().unwrap());
        m
    }

    #[test]
    fn the_client_is_the_peer_unless_a_trusted_proxy_names_it() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "127.0.0.1/32".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "6.6.6.6, 10.1.2.3".parse().unwrap());
        let ip = |s: &str| Some(s.parse::<std::net::IpAddr>().unwrap());
        assert_eq!(client_ip(&trusted, &h, ip("127.0.0.1")), "6.6.6.6", "the nearest untrusted hop");
        assert_eq!(client_ip(&trusted, &h, ip("192.0.2.9")), "192.0.2.9", "an untrusted peer's header is ignored");
        assert_eq!(client_ip(&[], &h, ip("127.0.0.1")), "127.0.0.1", "no trusted proxies: no header");
        assert_eq!(client_ip(&trusted, &HeaderMap::new(), ip("10.9.9.9")), "10.9.9.9");
        let mut junk = HeaderMap::new();
        junk.append("x-forwarded-for", "not an address".parse().unwrap());
        assert_eq!(client_ip(&trusted, &junk, ip("127.0.0.1")), "127.0.0.1");
    }

    #[test]
    fn parses_authorization() {
        assert_eq!(credentials(&HeaderMap::new()).unwrap(), Credentials::None);
        assert_eq!(
            credentials(&h("Basic YWxpY2U6cHc6eA==")).unwrap(),
            Credentials::Basic("alice".into(), "pw:x".into())
        );
        assert_eq!(credentials(&h("Bearer abc")).unwrap(), Credentials::Bearer("abc".into()));
        assert!(credentials(&h("Basic !!!")).is_err());
        assert!(credentials(&h("Digest x")).is_err());
        assert!(credentials(&h("Basic")).is_err());
    }
}
