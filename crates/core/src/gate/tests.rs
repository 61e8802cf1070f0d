//! Unit tests of the gate on the in-memory stores and upstream: a table of (who, request,
//! settings) → decision covering every rule, what a denial costs upstream (nothing), and a
//! property: a read of content is granted only when the directory permits it and the policy
//! does not deny it.

use std::sync::Arc;

use bytes::Bytes;
use oci::digest::Hasher;
use oci::endpoint::{Method, Mount, Page};
use oci::source::Source;
use oci::{Digest, Endpoint, Reference, RepoName};
use policy::{RegistryAccess, RestrictedImages, Settings};

use super::*;
use crate::clock::ManualClock;
use crate::content::Content;
use crate::iam::NewException;
use crate::memory::{Calls, MemoryBlobs, MemoryMeta, MemoryUpstream};
use crate::model::{Permission, Visibility};
use crate::services::{Ports, Services, Settings as ServiceSettings};
use crate::tokens::{ResourceAccess, generate_signing_key};

const T0: i64 = 1_800_000_000;
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

struct Env {
    s: Services,
    up: Arc<MemoryUpstream>,
    admin: Principal,
    alice: Principal,
    bob: Principal,
    carol: Principal,
    /// The upstream image `docker.io/someone/app:1` (`acme/app:1` is hosted).
    community: Digest,
    /// The community image's layer.
    layer: Digest,
}

/// An OCI image manifest of a config and one layer.
fn manifest(config: &Digest, layer: &Digest) -> Vec<u8> {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2 },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": 5 }],
    })
    .to_string()
    .into_bytes()
}

fn stream(b: &'static [u8]) -> crate::ports::ByteStream {
    Box::pin(futures_util::stream::iter(vec![Ok(Bytes::from_static(b))]))
}

fn name(s: &str) -> RepoName {
    s.parse().unwrap()
}

async fn env(config: GateConfig) -> Env {
    let up = Arc::new(MemoryUpstream::new(&["docker.io", "ghcr.io"]));
    let ports = Ports {
        meta: Arc::new(MemoryMeta::new()),
        blobs: Arc::new(MemoryBlobs::new()),
        upstream: up.clone(),
        clock: Arc::new(ManualClock::at(T0)),
        badge_lookup: None,
        password_directory: None,
        workload_verifier: None,
    };
    let settings = ServiceSettings {
        gate: config,
        proxy: crate::proxy::ProxyConfig { tag_ttl_secs: 60, cache_max_bytes: 0, node: None },
        audit_retention_days: 0,
        admins_only_create_orgs: false,
        token_service: "portcullis".into(),
        token_ttl_secs: 300,
        catalog: policy::Catalog::default(),
        sso_available: false,
        manifest_cache_bytes: 1 << 20,
        admission_issuer: None,
        gateway_host: None,
    };
    let s = Services::start(ports, settings, &[generate_signing_key().unwrap()]).await.unwrap();
    s.identity.bootstrap_admin(Some("admin-password")).await.unwrap();
    let principal = |name: &str| {
        let (id, is_admin) = s.identity.directory().snapshot().user(name).unwrap();
        Principal { id, username: name.into(), is_admin, scope: None }
    };
    let admin = principal("admin");
    for u in ["alice", "bob", "carol"] {
        s.identity.create_user(&admin, u, &format!("{u}-password"), false).await.unwrap();
    }
    let (alice, bob, carol) = (principal("alice"), principal("bob"), principal("carol"));
    s.orgs.create(&alice, "acme").await.unwrap();
    s.orgs.create_team(&alice, "acme", "dev").await.unwrap();
    s.orgs.add_member(&alice, "acme", "dev", "bob").await.unwrap();
    // acme/app:1 hosted here
    let app = Source::Hosted(name("acme/app"));
    let (c, l) = (Hasher::digest(oci::Algorithm::Sha256, b"{}"), Hasher::digest(oci::Algorithm::Sha256, b"layer"));
    let parts: [(&Digest, &'static [u8]); 2] = [(&c, b"{}"), (&l, b"layer")];
    for (d, body) in parts {
        s.contents.hosted.start_upload(&app, Some(d), None, stream(body)).await.unwrap();
    }
    let m = Bytes::from(manifest(&c, &l));
    s.contents.hosted.put_manifest(&app, &Reference::Tag("1".parse().unwrap()), Some(OCI_MANIFEST), m).await.unwrap();
    // docker.io/someone/app:1 upstream
    let (uc, ul) = (up.put_blob(b"{}"), up.put_blob(b"layer"));
    let community = up.put_manifest("docker.io/someone/app", "1", OCI_MANIFEST, &manifest(&uc, &ul));
    Env { s, up, admin, alice, bob, carol, community, layer: ul }
}

/// A caller with a registry token granting `access` (repository, actions).
fn token(who: Option<&Principal>, access: &[(&str, &[&str])]) -> Caller {
    let claims = Claims {
        iss: "portcullis".into(),
        sub: who.map(|p| p.username.clone()).unwrap_or_default(),
        aud: "portcullis".into(),
        exp: T0 + 300,
        nbf: T0,
        iat: T0,
        jti: "t".into(),
        access: access
            .iter()
            .map(|(n, a)| ResourceAccess {
                kind: "repository".into(),
                name: (*n).into(),
                actions: a.iter().map(|x| (*x).to_owned()).collect(),
            })
            .collect(),
    };
    let subject = match who {
        Some(p) => Subject::User(p.clone()),
        None => Subject::Anonymous,
    };
    Caller::Token { subject, claims: Arc::new(claims) }
}

/// A caller whose token grants everything the request needs.
fn user(p: &Principal) -> Caller {
    Caller::OnBehalf(Subject::User(p.clone()))
}

fn get_manifest(repo: &str, reference: &str) -> Endpoint {
    let reference = match reference.parse::<Digest>() {
        Ok(d) => Reference::Digest(d),
        Err(_) => Reference::Tag(reference.parse().unwrap()),
    };
    Endpoint::Manifest { method: Method::Get, name: name(repo), reference }
}

fn get_blob(repo: &str, d: &Digest) -> Endpoint {
    Endpoint::Blob { method: Method::Get, name: name(repo), digest: d.clone() }
}

/// What the gate answered, in short.
#[derive(Debug, PartialEq, Eq)]
enum Out {
    Grant,
    WouldDeny,
    SignIn(Option<&'static str>),
    Forbidden,
    Policy(String),
    Unsupported,
    Invalid,
    Unavailable,
}

async fn ask(e: &Env, caller: &Caller, ep: Endpoint) -> (Out, Option<Grant>) {
    let a = Ask { endpoint: ep, ns: None, host: None, client: "test", agent: "test" };
    match e.s.gate.decide(caller, a).await {
        Ok(g) if g.would_deny.is_some() => (Out::WouldDeny, Some(g)),
        Ok(g) => (Out::Grant, Some(g)),
        Err(Denial::SignIn { error, .. }) => (Out::SignIn(error), None),
        Err(Denial::Forbidden(_)) => (Out::Forbidden, None),
        Err(Denial::Policy(p)) => (Out::Policy(p.decision.rule.key().to_owned()), None),
        Err(Denial::Unsupported(_)) => (Out::Unsupported, None),
        Err(Denial::Invalid(_)) => (Out::Invalid, None),
        Err(Denial::Unavailable(_)) => (Out::Unavailable, None),
    }
}

async fn out(e: &Env, caller: &Caller, ep: Endpoint) -> Out {
    ask(e, caller, ep).await.0
}

/// A settings change naming every section.
fn whole(s: Settings) -> serde_json::Value {
    serde_json::to_value(s).unwrap()
}

fn restricted(allow_community: bool) -> Settings {
    Settings {
        restricted_images: RestrictedImages { enabled: true, allow_community, ..Default::default() },
        ..Default::default()
    }
}

#[tokio::test]
async fn sign_in_permissions_and_the_upstream_rule() {
    let e = env(GateConfig::default()).await;
    let bob = user(&e.bob);
    let anon = token(None, &[("acme/app", &["pull"]), ("alpine", &["pull"])]);
    let push = Endpoint::UploadStart { name: name("acme/app"), digest: None, mount: None };
    let rows: Vec<(&str, Caller, Endpoint, Out)> = vec![
        ("no credentials are challenged", Caller::Nobody, Endpoint::Base, Out::SignIn(None)),
        ("any token reaches /v2/", anon.clone(), Endpoint::Base, Out::Grant),
        ("anonymous: private repository", anon.clone(), get_manifest("acme/app", "1"), Out::SignIn(None)),
        ("a member without permission", bob.clone(), get_manifest("acme/app", "1"), Out::Forbidden),
        ("a non-member", user(&e.carol), get_manifest("acme/app", "1"), Out::Forbidden),
        ("the owner", user(&e.alice), get_manifest("acme/app", "1"), Out::Grant),
        ("the owner pushes", user(&e.alice), push.clone(), Out::Grant),
        ("the administrator", user(&e.admin), get_manifest("acme/app", "1"), Out::Grant),
        ("a signed-in user pulls through the proxy", bob.clone(), get_manifest("alpine", "1"), Out::Grant),
        ("anonymous may not pull through the proxy", anon.clone(), get_manifest("alpine", "1"), Out::SignIn(None)),
        (
            "nobody pushes to the proxy",
            user(&e.admin),
            Endpoint::UploadStart { name: name("alpine"), digest: None, mount: None },
            Out::Unsupported,
        ),
        (
            "nobody deletes in the proxy",
            user(&e.admin),
            Endpoint::Manifest {
                method: Method::Delete,
                name: name("alpine"),
                reference: Reference::Tag("1".parse().unwrap()),
            },
            Out::Unsupported,
        ),
        (
            "a token without the action",
            token(Some(&e.alice), &[("acme/app", &["pull"])]),
            push.clone(),
            Out::SignIn(Some("insufficient_scope")),
        ),
        (
            "a token for another repository",
            token(Some(&e.alice), &[("acme/other", &["pull"])]),
            get_manifest("acme/app", "1"),
            Out::SignIn(Some("insufficient_scope")),
        ),
    ];
    for (what, caller, ep, want) in rows {
        assert_eq!(out(&e, &caller, ep).await, want, "{what}");
    }
    // a team permission opens the repository to bob, and only for reading
    e.s.orgs.set_permission(&e.alice, "acme", "dev", "app", Some(Permission::Read)).await.unwrap();
    assert_eq!(out(&e, &bob, get_manifest("acme/app", "1")).await, Out::Grant);
    assert_eq!(out(&e, &bob, push).await, Out::Forbidden);
    // a public repository opens to anonymous callers
    e.s.orgs.set_visibility(&e.alice, "acme/app", Visibility::Public).await.unwrap();
    assert_eq!(out(&e, &anon, get_manifest("acme/app", "1")).await, Out::Grant);
    // anonymous pulls through the proxy when configured
    let open = env(GateConfig { proxy_anonymous: true, ..Default::default() }).await;
    assert_eq!(out(&open, &anon, get_manifest("alpine", "1")).await, Out::Grant);
    // a mirror query naming no valid registry resolves to nothing
    let ns =
        Ask { endpoint: get_manifest("someone/app", "1"), ns: Some("bad host!"), host: None, client: "", agent: "" };
    assert!(matches!(e.s.gate.decide(&bob, ns).await, Err(Denial::Invalid(_))));
}

#[tokio::test]
async fn enforced_sign_in() {
    let e = env(GateConfig { allowed_orgs: vec!["acme".into()], ..Default::default() }).await;
    let anon = token(None, &[("alpine", &["pull"])]);
    assert_eq!(out(&e, &anon, Endpoint::Base).await, Out::SignIn(None), "anonymous");
    assert_eq!(out(&e, &user(&e.carol), get_manifest("alpine", "1")).await, Out::Forbidden, "not a member of acme");
    assert_eq!(out(&e, &user(&e.bob), get_manifest("alpine", "1")).await, Out::Grant, "a member");
    assert_eq!(out(&e, &user(&e.admin), get_manifest("alpine", "1")).await, Out::Grant, "the administrator");
    let a = Ask { endpoint: Endpoint::Base, ns: None, host: None, client: "", agent: "" };
    match e.s.gate.decide(&anon, a).await {
        Err(Denial::SignIn { message, .. }) => assert!(message.contains("member of acme"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn image_and_registry_access_management() {
    let e = env(GateConfig::default()).await;
    let (bob, alice) = (user(&e.bob), user(&e.alice));
    e.s.iam.set_settings(&e.alice, "acme", &whole(restricted(false))).await.unwrap();
    let community = get_manifest("someone/app", "1");
    assert_eq!(out(&e, &bob, community.clone()).await, Out::Policy("category".into()), "community, by tag");
    let by_digest = get_manifest("someone/app", &e.community.to_string());
    assert_eq!(out(&e, &bob, by_digest).await, Out::Policy("category".into()), "and by digest");
    assert_eq!(out(&e, &bob, get_blob("someone/app", &e.layer)).await, Out::Policy("category".into()), "its blobs");
    let tags = Endpoint::Tags { name: name("someone/app"), page: Page::default() };
    assert_eq!(out(&e, &bob, tags).await, Out::Policy("category".into()), "its tags");
    let refs = Endpoint::Referrers { name: name("someone/app"), digest: e.community.clone(), artifact_type: None };
    assert_eq!(out(&e, &bob, refs).await, Out::Policy("category".into()), "its referrers");
    assert_eq!(out(&e, &bob, get_manifest("alpine", "1")).await, Out::Grant, "official images stay allowed");
    assert_eq!(out(&e, &alice, community.clone()).await, Out::Grant, "owners bypass their org's image rules");
    assert_eq!(out(&e, &user(&e.carol), community.clone()).await, Out::Grant, "non-members are not bound");
    // dry run serves with a warning
    let mut dry = restricted(false);
    dry.restricted_images.mode = policy::Mode::DryRun;
    e.s.iam.set_settings(&e.alice, "acme", &whole(dry)).await.unwrap();
    assert_eq!(out(&e, &bob, community.clone()).await, Out::WouldDeny);
    // an exception allows the repository
    e.s.iam.set_settings(&e.alice, "acme", &whole(restricted(false))).await.unwrap();
    let vetted = NewException {
        pattern: "docker.io/someone/*".into(),
        digest: None,
        team: Some("dev".into()),
        expires_at: Some(T0 + 10),
        reason: "vetted".into(),
    };
    e.s.iam.add_exception(&e.alice, "acme", vetted).await.unwrap();
    assert_eq!(out(&e, &bob, community.clone()).await, Out::Grant, "excepted for dev");
    // Registry Access Management binds owners too
    let ram = Settings {
        registry_access: RegistryAccess { enabled: true, allowed_registries: vec!["docker.io".into()] },
        ..Default::default()
    };
    e.s.iam.set_settings(&e.alice, "acme", &whole(ram)).await.unwrap();
    let ghcr = get_manifest("ghcr.io/owner/tool", "1");
    assert_eq!(out(&e, &alice, ghcr).await, Out::Policy("registry_access".into()));
    // a hosted image of another namespace is community for acme
    e.s.iam.set_settings(&e.alice, "acme", &whole(restricted(false))).await.unwrap();
    e.s.orgs.create(&e.carol, "other").await.unwrap();
    let other = Source::Hosted(name("other/tool"));
    let d = Hasher::digest(oci::Algorithm::Sha256, b"x");
    e.s.contents.hosted.start_upload(&other, Some(&d), None, stream(b"x")).await.unwrap();
    e.s.orgs.set_visibility(&e.carol, "other/tool", Visibility::Public).await.unwrap();
    assert_eq!(out(&e, &bob, get_blob("other/tool", &d)).await, Out::Policy("category".into()));
}

#[tokio::test]
async fn a_denied_pull_asks_the_upstream_nothing_and_caches_nothing() {
    let e = env(GateConfig::default()).await;
    e.s.iam.set_settings(&e.alice, "acme", &whole(restricted(false))).await.unwrap();
    for ep in [
        get_manifest("someone/app", "1"),
        get_manifest("someone/app", &e.community.to_string()),
        get_blob("someone/app", &e.layer),
    ] {
        assert_eq!(out(&e, &user(&e.bob), ep).await, Out::Policy("category".into()));
    }
    assert_eq!(e.up.calls(), Calls::default(), "no request of any kind went upstream");
    assert!(e.s.meta.repo("docker.io/someone/app").await.unwrap().is_none(), "not even a repository row");
}

#[tokio::test]
async fn digest_pins_decide_tags_by_what_they_name_now_and_parts_by_the_pinned_manifest() {
    let e = env(GateConfig::default()).await;
    let bob = user(&e.bob);
    e.s.iam.set_settings(&e.alice, "acme", &whole(restricted(false))).await.unwrap();
    let pin = NewException {
        pattern: "docker.io/someone/app".into(),
        digest: Some(e.community.to_string()),
        team: None,
        expires_at: None,
        reason: "this build only".into(),
    };
    e.s.iam.add_exception(&e.alice, "acme", pin).await.unwrap();
    // by tag: resolved with a HEAD (no GET, nothing stored), decided by the pinned digest
    let (o, g) = ask(&e, &bob, get_manifest("someone/app", "1")).await;
    assert_eq!(o, Out::Grant);
    assert_eq!(g.unwrap().digest.as_ref(), Some(&e.community), "served by the digest decided on");
    assert_eq!(e.up.calls(), Calls { heads: 1, ..Default::default() });
    assert!(e.s.meta.repo("docker.io/someone/app").await.unwrap().is_none());
    // a tag that names another digest is denied
    let (uc, ul) = (e.up.put_blob(b"{ }"), e.up.put_blob(b"other"));
    e.up.put_manifest("docker.io/someone/app", "2", OCI_MANIFEST, &manifest(&uc, &ul));
    assert_eq!(out(&e, &bob, get_manifest("someone/app", "2")).await, Out::Policy("category".into()));
    // by digest
    assert_eq!(out(&e, &bob, get_manifest("someone/app", &e.community.to_string())).await, Out::Grant);
    // a blob is allowed as a part of the pinned manifest, once it is stored here
    assert_eq!(out(&e, &bob, get_blob("someone/app", &e.layer)).await, Out::Policy("category".into()));
    let src = Source::Upstream(oci::source::UpstreamRepo { registry: "docker.io".into(), path: name("someone/app") });
    e.s.contents.cached.manifest(&src, &Reference::Digest(e.community.clone())).await.unwrap();
    assert_eq!(out(&e, &bob, get_blob("someone/app", &e.layer)).await, Out::Grant);
    assert_eq!(out(&e, &bob, get_blob("someone/app", &ul)).await, Out::Policy("category".into()), "not a part");
}

#[tokio::test]
async fn mounts_need_pull_on_their_source() {
    let e = env(GateConfig::default()).await;
    let lib = Source::Hosted(name("acme/lib"));
    let d = Hasher::digest(oci::Algorithm::Sha256, b"x");
    e.s.contents.hosted.start_upload(&lib, Some(&d), None, stream(b"x")).await.unwrap();
    let mount = |from: &str| Endpoint::UploadStart {
        name: name("bob/mine"),
        digest: None,
        mount: Some(Mount { digest: d.clone(), from: Some(name(from)) }),
    };
    e.s.orgs.set_permission(&e.alice, "acme", "dev", "lib", Some(Permission::Read)).await.unwrap();
    // bob may pull acme/lib, but his token does not say so: he is asked to come back for it
    let narrow = token(Some(&e.bob), &[("bob/mine", &["pull", "push"])]);
    let a = Ask { endpoint: mount("acme/lib"), ns: None, host: None, client: "", agent: "" };
    match e.s.gate.decide(&narrow, a).await {
        Err(Denial::SignIn { scope, error, .. }) => {
            assert_eq!(error, Some("insufficient_scope"));
            assert_eq!(scope.as_deref(), Some("repository:bob/mine:pull,push repository:acme/lib:pull"));
        }
        other => panic!("{other:?}"),
    }
    let wide = token(Some(&e.bob), &[("bob/mine", &["pull", "push"]), ("acme/lib", &["pull"])]);
    let (o, g) = ask(&e, &wide, mount("acme/lib")).await;
    assert_eq!(o, Out::Grant);
    assert!(matches!(g.unwrap().endpoint, Endpoint::UploadStart { mount: Some(_), .. }), "mounted");
    // carol may not pull acme/lib: her mount becomes an upload, whatever her token says
    let carol = token(Some(&e.carol), &[("carol/mine", &["pull", "push"]), ("acme/lib", &["pull"])]);
    let ep = Endpoint::UploadStart {
        name: name("carol/mine"),
        digest: None,
        mount: Some(Mount { digest: d.clone(), from: Some(name("acme/lib")) }),
    };
    let (o, g) = ask(&e, &carol, ep).await;
    assert_eq!(o, Out::Grant);
    assert!(matches!(g.unwrap().endpoint, Endpoint::UploadStart { mount: None, .. }), "downgraded");
    // and so does bob's, when the policy refuses the source (another org's image is community)
    e.s.orgs.create(&e.carol, "other").await.unwrap();
    let theirs = Source::Hosted(name("other/lib"));
    e.s.contents.hosted.start_upload(&theirs, Some(&d), None, stream(b"x")).await.unwrap();
    e.s.orgs.set_visibility(&e.carol, "other/lib", Visibility::Public).await.unwrap();
    e.s.iam.set_settings(&e.alice, "acme", &whole(restricted(false))).await.unwrap();
    let (o, g) = ask(&e, &user(&e.bob), mount("other/lib")).await;
    assert_eq!(o, Out::Grant);
    assert!(matches!(g.unwrap().endpoint, Endpoint::UploadStart { mount: None, .. }), "policy downgrade");
}

#[tokio::test]
async fn served_manifests_and_denials_are_audited_check_is_not() {
    let e = env(GateConfig::default()).await;
    e.s.iam.set_settings(&e.alice, "acme", &whole(restricted(false))).await.unwrap();
    assert_eq!(out(&e, &user(&e.bob), get_manifest("someone/app", "1")).await, Out::Policy("category".into()));
    let (_, g) = ask(&e, &user(&e.bob), get_manifest("alpine", "1")).await;
    e.s.gate.served(&g.unwrap(), Some("sha256:aa".into())).await;
    let c = e.s.gate.check(&e.alice, "acme", "bob", "someone/app:1").await.unwrap();
    assert_eq!((c.effect, c.decided_by, c.category.as_deref()), ("deny", "policy", Some("community")));
    let q = crate::model::AuditQuery { action: Some("pull".into()), ..Default::default() };
    let mut pulls = vec![];
    for _ in 0..50 {
        pulls = e.s.meta.query_audit(Some("acme"), &q).await.unwrap();
        if pulls.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let seen: Vec<(String, String)> =
        pulls.iter().map(|p| (p.image.clone().unwrap(), p.decision.unwrap().as_str().to_owned())).rev().collect();
    assert_eq!(
        seen,
        [
            ("docker.io/someone/app".to_string(), "denied".to_string()),
            ("docker.io/library/alpine".into(), "allowed".into())
        ]
    );
    assert_eq!(pulls[0].digest.as_deref(), Some("sha256:aa"), "the served digest");
}

#[tokio::test]
async fn check_traces_the_step_that_decided() {
    let e = env(GateConfig::default()).await;
    let c = e.s.gate.check(&e.alice, "acme", "bob", "acme/app:1").await.unwrap();
    assert_eq!((c.effect, c.decided_by), ("deny", "repository"), "{c:?}");
    assert!(c.message.contains("private to acme"), "{}", c.message);
    e.s.orgs.set_permission(&e.alice, "acme", "dev", "app", Some(Permission::Read)).await.unwrap();
    let c = e.s.gate.check(&e.bob, "acme", "bob", "acme/app:1").await.unwrap();
    assert_eq!((c.effect, c.category.as_deref()), ("allow", Some("organization")));
    let steps: Vec<&str> = c.trace.iter().map(|s| s.step).collect();
    assert_eq!(steps, ["sign_in", "repository", "policy"]);
    assert!(e.s.gate.check(&e.bob, "acme", "alice", "alpine").await.is_err(), "members check only themselves");
    assert!(e.s.gate.check(&e.alice, "acme", "carol", "alpine").await.is_err(), "only the org's members");
}

mod property {
    use proptest::prelude::*;

    use super::*;

    /// The policy's settings, enforced (a dry run grants what it would deny).
    fn settings() -> impl Strategy<Value = Settings> {
        policy::strategies::settings().prop_map(|mut s| {
            s.restricted_images.mode = policy::Mode::Enforce;
            s
        })
    }

    fn endpoint() -> impl Strategy<Value = Endpoint> {
        let repos = prop_oneof![
            Just("acme/app"),
            Just("alpine"),
            Just("someone/app"),
            Just("ghcr.io/o/tool"),
            Just("other/tool")
        ];
        (repos, 0..4u8).prop_map(|(repo, kind)| {
            let d = Hasher::digest(oci::Algorithm::Sha256, b"layer");
            match kind {
                0 => get_manifest(repo, "1"),
                1 => get_blob(repo, &d),
                2 => Endpoint::Tags { name: name(repo), page: Page::default() },
                _ => Endpoint::Referrers { name: name(repo), digest: d, artifact_type: None },
            }
        })
    }

    /// The property, over one environment whose settings each case replaces.
    #[test]
    fn content_is_read_only_with_a_grant_that_permission_and_policy_allow() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let e = rt.block_on(env(GateConfig::default()));
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig { cases: 256, ..Default::default() });
        let result = runner.run(&(settings(), endpoint(), 0..4usize), |(s, ep, who)| {
            rt.block_on(async {
                e.s.iam.set_settings(&e.alice, "acme", &whole(s)).await.unwrap();
                let subject = match who {
                    0 => Subject::Anonymous,
                    1 => Subject::User(e.alice.clone()),
                    2 => Subject::User(e.bob.clone()),
                    _ => Subject::User(e.carol.clone()),
                };
                let before = e.up.calls();
                let repo = ep.repository().cloned().unwrap();
                let a = Ask { endpoint: ep, ns: None, host: None, client: "", agent: "" };
                let decided = e.s.gate.decide(&Caller::OnBehalf(subject.clone()), a).await;
                let snap = e.s.identity.directory().snapshot();
                let source = oci::source::resolve(&repo, None, None, |n| snap.namespace(n).is_some()).unwrap();
                let image = image_of_source(&source, None);
                let memberships = match &subject {
                    Subject::User(p) => snap.memberships(p.id),
                    Subject::Anonymous => vec![],
                };
                let policy = policy::decide(&memberships, &image, &e.s.iam.snapshot(), T0);
                match decided {
                    Ok(_) => {
                        let permitted = match &source {
                            Source::Hosted(n) => snap.permitted(&subject, n).pull,
                            Source::Upstream(_) => matches!(subject, Subject::User(_)),
                        };
                        prop_assert!(permitted, "granted without permission");
                        prop_assert!(policy.effect != Effect::Deny, "granted against the policy");
                    }
                    Err(_) => prop_assert_eq!(e.up.calls(), before, "a refusal asked the upstream"),
                }
                Ok(())
            })
        });
        if let Err(e) = result {
            panic!("{e}");
        }
    }
}

/// A PEM public key and a cosign signature attachment of `digest` by a new P-256 key, put at
/// the upstream next to `repo`.
fn sign_upstream(up: &MemoryUpstream, repo: &str, digest: &Digest) -> String {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
    let der = key.public_key().as_der().unwrap();
    let body = b64.encode(der.as_ref());
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    let pem = format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", lines.join("\n"));
    let payload = serde_json::json!({"critical": {"identity": {"docker-reference": format!("docker.io/{repo}")},
        "image": {"docker-manifest-digest": digest}, "type": "cosign container image signature"}, "optional": null})
    .to_string();
    let signature = key.sign(&aws_lc_rs::rand::SystemRandom::new(), payload.as_bytes()).unwrap();
    let p = up.put_blob(payload.as_bytes());
    let c = up.put_blob(b"{}");
    let sig = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": 2},
        "layers": [{"mediaType": crate::signatures::cosign::SIMPLESIGNING, "digest": p, "size": payload.len(),
            "annotations": {(crate::signatures::cosign::SIGNATURE_ANNOTATION): b64.encode(signature.as_ref())}}]});
    let tag = crate::signatures::cosign::signature_tag(digest);
    up.put_manifest(&format!("docker.io/{repo}"), tag.as_str(), OCI_MANIFEST, sig.to_string().as_bytes());
    pem
}

#[tokio::test]
async fn signature_rules_serve_what_a_rule_key_signed_and_remember_it() {
    let e = env(GateConfig::default()).await;
    let key = sign_upstream(&e.up, "someone/app", &e.community);
    let unsigned = e.up.put_manifest("docker.io/someone/other", "1", OCI_MANIFEST, &manifest(&e.layer, &e.layer));
    let rule = |mode: &str| serde_json::json!({"signatures": {"rules": [{"images": "docker.io/someone/*", "keys": [key], "mode": mode}]}});
    e.s.iam.set_settings(&e.alice, "acme", &rule("enforce")).await.unwrap();
    let bob = user(&e.bob);
    let (o, g) = ask(&e, &bob, get_manifest("someone/app", "1")).await;
    assert_eq!((o, g.and_then(|g| g.digest)), (Out::Grant, Some(e.community.clone())), "served exactly what verified");
    let before = e.up.calls();
    assert_eq!(out(&e, &bob, get_manifest("someone/app", &e.community.to_string())).await, Out::Grant);
    assert_eq!(e.up.calls().gets(), before.gets(), "verified before: nothing fetched again");
    assert_eq!(out(&e, &bob, get_manifest("someone/other", "1")).await, Out::Policy("signature".into()));
    assert_eq!(
        out(&e, &bob, get_manifest("someone/other", &unsigned.to_string())).await,
        Out::Policy("signature".into())
    );
    assert_eq!(out(&e, &bob, get_blob("someone/other", &e.layer)).await, Out::Grant, "rules bind manifests");
    assert_eq!(out(&e, &user(&e.alice), get_manifest("someone/other", "1")).await, Out::Grant, "owners bypass");
    assert_eq!(
        out(&e, &user(&e.carol), get_manifest("someone/other", "1")).await,
        Out::Grant,
        "outsiders are not bound"
    );
    let sig_tag = crate::signatures::cosign::signature_tag(&e.community);
    assert_eq!(out(&e, &bob, get_manifest("someone/app", sig_tag.as_str())).await, Out::Grant, "signature objects");
    e.s.iam.set_settings(&e.alice, "acme", &rule("dry_run")).await.unwrap();
    assert_eq!(out(&e, &bob, get_manifest("someone/other", "1")).await, Out::WouldDeny);
}

#[tokio::test]
async fn a_child_pulled_alone_is_covered_by_a_signed_index_stored_here() {
    let e = env(GateConfig::default()).await;
    let repo = "docker.io/someone/multi";
    let child = |text: &'static [u8]| {
        let (c, l) = (e.up.put_blob(b"{}"), e.up.put_blob(text));
        let m = manifest(&c, &l);
        (e.up.put_manifest(repo, &format!("part-{}", text.len()), OCI_MANIFEST, &m), m.len())
    };
    let index = |children: &[(Digest, usize)]| {
        let list: Vec<_> = children
            .iter()
            .map(|(d, n)| serde_json::json!({"mediaType": OCI_MANIFEST, "digest": d, "size": n}))
            .collect();
        serde_json::json!({"schemaVersion": 2, "mediaType": oci::manifest::OCI_INDEX, "manifests": list}).to_string()
    };
    let (a, b) = (child(b"amd64"), child(b"arm64 layer"));
    let signed = e.up.put_manifest(repo, "1", oci::manifest::OCI_INDEX, index(std::slice::from_ref(&a)).as_bytes());
    e.up.put_manifest(repo, "2", oci::manifest::OCI_INDEX, index(std::slice::from_ref(&b)).as_bytes());
    let key = sign_upstream(&e.up, "someone/multi", &signed);
    // both indexes were pulled (and stored) before the rule, or before a restart
    let src = Source::Upstream(oci::source::UpstreamRepo { registry: "docker.io".into(), path: name("someone/multi") });
    for tag in ["1", "2"] {
        e.s.contents.cached.manifest(&src, &Reference::Tag(tag.parse().unwrap())).await.unwrap();
    }
    let rule = serde_json::json!({"signatures": {"rules": [{"images": "docker.io/someone/*", "keys": [key]}]}});
    e.s.iam.set_settings(&e.alice, "acme", &rule).await.unwrap();
    let bob = user(&e.bob);
    assert_eq!(
        out(&e, &bob, get_manifest("someone/multi", &a.0.to_string())).await,
        Out::Grant,
        "listed by a signed index"
    );
    assert_eq!(
        out(&e, &bob, get_manifest("someone/multi", &b.0.to_string())).await,
        Out::Policy("signature".into()),
        "listed only by an unsigned one"
    );
}
