//! Signature requirements with real clients: images signed the way cosign and containers/image
//! sign them (by `sigstore_sign.py`, Python `cryptography`, independent of the product's
//! verifier), attachments pushed with skopeo, pulled by members through the gateway — hosted
//! and through the cache, by tag and by digest, a multi-arch index and its children.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::images::{self, Layout};
use crate::support::{Server, acme_with_member_bob, audit_entry, pw, run, skopeo_pull, skopeo_push};

fn helper() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/sigstore_sign.py")
}

/// Runs `sigstore_sign.py` with `args`; returns what it printed (it must succeed).
fn python(args: &[&str]) -> String {
    let (ok, out) = run(Command::new("python3").arg(helper()).args(args));
    assert!(ok, "sigstore_sign.py {args:?}: {out}");
    out.trim().to_owned()
}

/// A key pair `name` (`p256` or `ed25519`) in `dir`; returns the public key PEM.
fn keygen(dir: &Path, name: &str, kind: &str) -> String {
    python(&["keygen", dir.to_str().unwrap(), name, kind]);
    std::fs::read_to_string(dir.join(format!("{name}.pub"))).unwrap()
}

/// Signs `digest` with `keys` (`path` or `path=other-digest`) into a layout at `out`; returns the
/// signature manifest's digest.
fn sign(out: &Path, digest: &str, reference: &str, keys: &[String]) -> String {
    let mut args = vec!["sign", out.to_str().unwrap(), digest, reference];
    args.extend(keys.iter().map(String::as_str));
    python(&args)
}

/// The tag cosign keeps the signatures of `digest` under.
fn sig_tag(digest: &str) -> String {
    format!("{}.sig", digest.replace(':', "-"))
}

/// Pushes the image `sig` of the helper's layout at `layout` to `registry/repo_tag`, as it is.
fn push_layout(layout: &Path, registry: &str, creds: Option<&str>, repo_tag: &str) {
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "-q", "--preserve-digests", "--dest-tls-verify=false"]);
    if let Some(c) = creds {
        cmd.args(["--dest-creds", c]);
    }
    cmd.arg(format!("oci:{}:sig", layout.display())).arg(format!("docker://{registry}/{repo_tag}"));
    let (ok, out) = run(&mut cmd);
    assert!(ok, "push {repo_tag}: {out}");
}

/// Pushes the signature layout at `sig` as the attachment of `digest` in `registry/repo`.
fn push_signature(sig: &Path, registry: &str, creds: Option<&str>, repo: &str, digest: &str) {
    push_layout(sig, registry, creds, &format!("{repo}:{}", sig_tag(digest)));
}

/// Verifies a pulled signature object outside the product, as a client-side verifier would.
fn verify_outside(dir: &Path, digest: &str, public_key: &Path) {
    let out = python(&["verify", dir.to_str().unwrap(), digest, public_key.to_str().unwrap()]);
    assert!(out.contains(&format!("verified {digest}")), "{out}");
}

fn rule(images: &str, keys: &[&str], mode: &str) -> Value {
    json!({"signatures": {"rules": [{"images": images, "keys": keys, "mode": mode}]}})
}

struct Keys {
    dir: tempfile::TempDir,
    a: String,
    b: String,
    e: String,
}

impl Keys {
    fn new() -> Keys {
        let dir = tempfile::tempdir().unwrap();
        let a = keygen(dir.path(), "a", "p256");
        let b = keygen(dir.path(), "b", "p256");
        let e = keygen(dir.path(), "e", "ed25519");
        Keys { dir, a, b, e }
    }

    fn key(&self, name: &str) -> String {
        self.dir.path().join(format!("{name}.key")).display().to_string()
    }

    fn public(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.pub"))
    }
}

#[tokio::test]
async fn hosted_images_are_served_to_members_only_when_signed_by_a_rule_key() {
    let s = Server::start().await;
    s.create_user("alice").await;
    acme_with_member_bob(&s).await;
    let work = tempfile::tempdir().unwrap();
    let layout: Layout = images::make(&work.path().join("layout"));
    let unsigned = images::add_image(&layout, "unsigned", "nobody signed this\n");
    let other = images::add_image(&layout, "other", "signed by a key no rule names\n");
    let ed = images::add_image(&layout, "ed", "signed with Ed25519\n");
    let elsewhere = images::add_image(&layout, "elsewhere", "its signature names another image\n");
    let junk = images::add_image(&layout, "junk", "its signature tag holds an image\n");
    let crowded = images::add_image(&layout, "crowded", "a good signature, then hundreds of others\n");
    let buried = images::add_image(&layout, "buried", "hundreds of others, then a good signature\n");
    let referred = images::add_image(&layout, "referred", "signed by an OCI 1.1 referrer\n");
    let keys = Keys::new();
    let (gw, ap, bp) = (s.addr(), format!("alice:{}", pw("alice")), format!("bob:{}", pw("bob")));
    for (image, tag) in [
        ("tiny", "signed"),
        ("unsigned", "unsigned"),
        ("other", "other"),
        ("ed", "ed"),
        ("elsewhere", "elsewhere"),
        ("junk", "junk"),
        ("crowded", "crowded"),
        ("buried", "buried"),
        ("referred", "referred"),
    ] {
        let (ok, out) = skopeo_push(&layout.dir, image, &gw, &ap, &format!("acme/app:{tag}"));
        assert!(ok, "{out}");
    }
    let signatures = [
        (&layout.tiny, vec![keys.key("a")]),
        (&other, vec![keys.key("b")]),
        (&ed, vec![keys.key("e")]),
        (&elsewhere, vec![format!("{}={}", keys.key("a"), layout.tiny)]),
        (&crowded, vec![keys.key("a"), format!("{}*270", keys.key("b"))]),
        (&buried, vec![format!("{}*270", keys.key("b")), keys.key("a")]),
    ];
    let mut sig_of_tiny = None;
    for (i, (digest, by)) in signatures.iter().enumerate() {
        let out = work.path().join(format!("sig{i}"));
        let m = sign(&out, digest, &format!("{gw}/acme/app"), by);
        sig_of_tiny.get_or_insert((out.clone(), m));
        push_signature(&out, &gw, Some(&ap), "acme/app", digest);
    }
    // A signature kept as a referrer (cosign's OCI 1.1 mode), pushed under a tag of its own.
    let manifest = std::fs::read(layout.dir.join("blobs/sha256").join(&referred[7..])).unwrap();
    let subject = format!("{referred}:{}:application/vnd.oci.image.manifest.v1+json", manifest.len());
    let out = work.path().join("referrer");
    python(&["referrer", out.to_str().unwrap(), &subject, &format!("{gw}/acme/app"), &keys.key("a")]);
    push_layout(&out, &gw, Some(&ap), "acme/app:referrer-of-referred");
    // An attestation, as cosign attaches it: served under a rule (it runs nothing).
    let att = work.path().join("attestation");
    python(&["attachment", att.to_str().unwrap(), "application/vnd.dsse.envelope.v1+json"]);
    let att_tag = format!("{}.att", layout.tiny.replace(':', "-"));
    push_layout(&att, &gw, Some(&ap), &format!("acme/app:{att_tag}"));
    // A runnable image where a signature should be.
    let (ok, out) = skopeo_push(&layout.dir, "tiny", &gw, &ap, &format!("acme/app:{}", sig_tag(&junk)));
    assert!(ok, "{out}");

    let alice = ("alice", pw("alice"));
    let alice = (alice.0, alice.1.as_str());
    let read = json!({"permission": "read"});
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/teams/dev/permissions/app", alice, Some(read)).await.0, 200);
    let (st, body) =
        s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(rule("org", &[&keys.a, &keys.e], "enforce"))).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["signatures"]["rules"][0]["images"], "organization", "{body}");

    let pull = |name: &str, user: &str| {
        let creds = if user == "bob" { bp.clone() } else { ap.clone() };
        skopeo_pull(&gw, &creds, name, &work.path().join(format!("pull-{}", name.replace([':', '/', '@'], "-"))))
    };
    let (ok, out) = pull("acme/app:signed", "bob");
    assert!(ok, "signed by tag: {out}");
    let (ok, out) = pull(&format!("acme/app@{}", layout.tiny), "bob");
    assert!(ok, "signed by digest: {out}");
    let (ok, out) = pull("acme/app:ed", "bob");
    assert!(ok, "Ed25519: {out}");
    let (ok, out) = pull("acme/app:referred", "bob");
    assert!(ok, "signed by a referrer: {out}");
    let (ok, out) = pull("acme/app:crowded", "bob");
    assert!(ok, "the good signature comes first: {out}");
    let (ok, out) = pull(&format!("acme/app:{att_tag}"), "bob");
    assert!(ok, "an attestation is served: {out}");
    for (name, why) in [
        ("acme/app:unsigned".to_owned(), "it has no signature"),
        (format!("acme/app@{unsigned}"), "it has no signature"),
        ("acme/app:other".to_owned(), "no signature verifies with the required keys"),
        ("acme/app:elsewhere".to_owned(), "is for another image"),
        ("acme/app:junk".to_owned(), "holds something that is not a signature"),
        ("acme/app:buried".to_owned(), "(256 signatures checked, 15 more not: at most 256 per object"),
    ] {
        let (ok, out) = pull(&name, "bob");
        assert!(!ok, "{name} was served");
        assert!(out.contains("Signature requirement: acme/app must be signed by SHA256:"), "{name}: {out}");
        assert!(out.contains("signature rule 1: organization") && out.contains(why), "{name}: {out}");
    }
    let (ok, out) = pull("acme/app:unsigned", "alice");
    assert!(ok, "owners are not bound: {out}");

    // The signature object pulls byte-identical, and verifies outside the product.
    let (sig_layout, sig_manifest) = sig_of_tiny.unwrap();
    let dir = work.path().join("sig-pulled");
    let (ok, out) = skopeo_pull(&gw, &bp, &format!("acme/app:{}", sig_tag(&layout.tiny)), &dir);
    assert!(ok, "{out}");
    let pulled = std::fs::read(dir.join("manifest.json")).unwrap();
    assert_eq!(pulled, std::fs::read(sig_layout.join("blobs/sha256").join(&sig_manifest[7..])).unwrap());
    verify_outside(&dir, &layout.tiny, &keys.public("a"));

    // Denials are audited and explained by `check`.
    let e = audit_entry(&s, "pull", |e| e["rule"] == "signature" && e["digest"] == unsigned.as_str()).await;
    assert_eq!(
        (e["decision"].as_str(), e["org"].as_str(), e["actor"].as_str()),
        (Some("denied"), Some("acme"), Some("bob"))
    );
    let (st, c) = s.api("GET", "/api/v1/orgs/acme/check?user=bob&image=acme/app:unsigned", alice, None).await;
    assert_eq!(st, 200, "{c}");
    assert_eq!(
        (c["effect"].as_str(), c["decided_by"].as_str(), c["rule"].as_str()),
        (Some("deny"), Some("signature"), Some("signature")),
        "{c}"
    );
    assert_eq!(c["digest"], unsigned.as_str());
    let (_, c) = s.api("GET", "/api/v1/orgs/acme/check?user=bob&image=acme/app:signed", alice, None).await;
    assert_eq!(c["effect"], "allow", "{c}");
    assert!(c["trace"].as_array().unwrap().iter().any(|t| t["step"] == "signature" && t["outcome"] == "pass"), "{c}");

    // A signature by any one of a rule's keys will do: with key b added, `other` is served.
    let (st, body) =
        s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(rule("org", &[&keys.a, &keys.b], "enforce"))).await;
    assert_eq!(st, 200, "{body}");
    let (ok, out) = pull("acme/app:other", "bob");
    assert!(ok, "signed by b: {out}");

    // Dry run: served, with the warning.
    let (st, body) = s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(rule("org", &[&keys.a], "dry_run"))).await;
    assert_eq!(st, 200, "{body}");
    let token = s.token(Some(("bob", &pw("bob"))), &["repository:acme/app:pull"]).await;
    let r = s
        .req("GET", "/v2/acme/app/manifests/unsigned", Some(&token))
        .await
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let warning = r.headers()["warning"].to_str().unwrap().to_owned();
    assert!(warning.starts_with("299 portcullis") && warning.contains("Signature requirement"), "{warning}");
    assert_eq!(r.headers()["docker-content-digest"], unsigned.as_str());

    // Rules that cannot be right are refused, and change nothing.
    for (bad, why) in [
        (rule("org", &["not a key"], "enforce"), "signature rule 1: key 1: not a PEM public key"),
        (rule("docker.io/*/x", &[&keys.a], "enforce"), "signature rule 1: invalid repository pattern"),
        (rule("everything", &[&keys.a], "enforce"), "neither a category"),
        (rule("org", &[], "enforce"), "between 1 and 10 public keys"),
        (rule("org", &[&keys.a], "sometimes"), "unknown variant `sometimes`, expected `enforce` or `dry_run`"),
    ] {
        let (st, body) = s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(bad)).await;
        assert_eq!(st, 400, "{body}");
        assert!(body["message"].as_str().unwrap().contains(why), "{body}");
    }
    for bad in
        [json!({"signatures": []}), json!({"signatures": {"rules": "org"}}), json!({"signatures": {"rules": [7]}})]
    {
        let (st, body) = s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(bad)).await;
        assert_eq!(st, 400, "{body}");
    }
    let (_, now) = s.api("GET", "/api/v1/orgs/acme/settings", alice, None).await;
    assert_eq!(now["signatures"]["rules"][0]["mode"], "dry_run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_images_an_index_and_its_children_by_signature() {
    let e = crate::proxy::setup(&[]).await;
    let s = &e.s;
    acme_with_member_bob(s).await;
    let keys = Keys::new();
    let sig = e.work.path().join("multi-sig");
    sign(&sig, &e.layout.multi, "docker.io/library/multi", &[keys.key("a")]);
    push_signature(&sig, &e.hub.addr(), None, "library/multi", &e.layout.multi);
    crate::proxy::upstream_image(&e.hub, "library/plain", "1", b"an unsigned layer").await;
    let alice = pw("alice");
    let alice = ("alice", alice.as_str());
    let rule = rule("docker.io/library/*", &[&keys.a], "enforce");
    let (st, body) = s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(rule)).await;
    assert_eq!(st, 200, "{body}");

    let (gw, bp) = (s.addr(), format!("bob:{}", pw("bob")));
    let (ok, out) = run(Command::new("skopeo").args([
        "copy",
        "-q",
        "--all",
        "--src-tls-verify=false",
        "--src-creds",
        &bp,
        &format!("docker://{gw}/library/multi:1"),
        &format!("oci:{}/multi:x", e.work.path().display()),
    ]));
    assert!(ok, "the signed index and both children: {out}");
    let arm = {
        let index: Value = serde_json::from_slice(
            &std::fs::read(e.layout.dir.join("blobs/sha256").join(&e.layout.multi[7..])).unwrap(),
        )
        .unwrap();
        index["manifests"][1]["digest"].as_str().unwrap().to_owned()
    };
    let (ok, out) = skopeo_pull(&gw, &bp, &format!("library/multi@{arm}"), &e.work.path().join("arm"));
    assert!(ok, "a child of a signed index, by digest: {out}");
    let (ok, out) = skopeo_pull(&gw, &bp, "library/plain:1", &e.work.path().join("plain"));
    assert!(
        !ok && out.contains("signature rule 1: docker.io/library/*") && out.contains("it has no signature"),
        "{out}"
    );
    assert_eq!(e.fp.count("GET", "/library/plain/blobs/"), 0, "nothing of a refused image's layers is fetched");

    // The signature object comes through the cache byte-identical and verifies outside.
    let dir = e.work.path().join("sig-pulled");
    let (ok, out) = skopeo_pull(&gw, &bp, &format!("library/multi:{}", sig_tag(&e.layout.multi)), &dir);
    assert!(ok, "{out}");
    let pushed = std::fs::read_to_string(sig.join("index.json")).unwrap();
    let sig_digest =
        serde_json::from_str::<Value>(&pushed).unwrap()["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let pulled = std::fs::read(dir.join("manifest.json")).unwrap();
    assert_eq!(pulled, std::fs::read(sig.join("blobs/sha256").join(&sig_digest[7..])).unwrap(), "byte-identical");
    verify_outside(&dir, &e.layout.multi, &keys.public("a"));

    // An upstream that fails while a new image is checked: refused with the reason.
    crate::proxy::upstream_image(&e.hub, "library/later", "1", b"another layer").await;
    e.fp.set(crate::upstreams::Fault::Status(500));
    let (ok, out) = skopeo_pull(&gw, &bp, "library/later:1", &e.work.path().join("later"));
    assert!(!ok && out.contains("Signature requirement") && out.contains("could not"), "{out}");
    e.fp.set(crate::upstreams::Fault::None);
    // ...and the signed index, verified before, is still served from memory and cache.
    let (ok, out) = skopeo_pull(&gw, &bp, &format!("library/multi@{}", e.layout.multi), &e.work.path().join("again"));
    assert!(ok, "{out}");
}

/// Un-escapes an HTML attribute value as askama escapes it.
fn unescape(v: &str) -> String {
    v.replace("&#10;", "\n")
        .replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#43;", "+")
        .replace("&#47;", "/")
        .replace("&#61;", "=")
        .replace("&amp;", "&")
}

#[tokio::test]
async fn owners_add_and_remove_rules_in_the_console_through_the_impact_preview() {
    let s = Server::start().await;
    s.create_user("alice").await;
    acme_with_member_bob(&s).await;
    let work = tempfile::tempdir().unwrap();
    let layout = images::make(&work.path().join("layout"));
    let (gw, ap, bp) = (s.addr(), format!("alice:{}", pw("alice")), format!("bob:{}", pw("bob")));
    assert!(skopeo_push(&layout.dir, "tiny", &gw, &ap, "acme/app:1").0);
    let alice_pw = pw("alice");
    let read = json!({"permission": "read"});
    let perm = "/api/v1/orgs/acme/teams/dev/permissions/app";
    assert_eq!(s.api("PUT", perm, ("alice", &alice_pw), Some(read)).await.0, 200);
    let (ok, out) = skopeo_pull(&gw, &bp, "acme/app:1", &work.path().join("before"));
    assert!(ok, "{out}");
    audit_entry(&s, "pull", |e| e["actor"] == "bob" && e["image"] == "acme/app").await;
    let keys = Keys::new();
    let alice = crate::web::Web::sign_in(&s, "alice", &alice_pw).await;
    let bob = crate::web::Web::sign_in(&s, "bob", &pw("bob")).await;

    // bob's unsigned pull would be refused: the preview shows it and nothing is saved yet.
    let form = [("images", "org"), ("keys", keys.a.as_str()), ("identity", ""), ("mode", "enforce")];
    let (st, _, html) = alice.post("/orgs/acme/signature-rules", &form).await;
    assert_eq!(st, 200, "{html}");
    assert!(html.contains("Impact preview: not saved yet") && html.contains("<code>acme/app</code>"), "{html}");
    assert!(html.contains("Add the signature rule anyway"));
    let (_, v) = s.admin("GET", "/api/v1/orgs/acme/settings", None).await;
    assert_eq!(v["signatures"]["rules"], json!([]), "unchanged until confirmed");
    let hidden = |name: &str| {
        let marker = format!("name=\"{name}\" value=\"");
        unescape(html.split(&marker).nth(1).unwrap().split('"').next().unwrap())
    };
    let (keys_field, confirmed) = (hidden("keys"), hidden("confirmed"));
    assert_eq!(keys_field.trim(), keys.a.trim(), "the form carries the key as given");
    let confirm = [
        ("images", "org"),
        ("keys", keys_field.as_str()),
        ("identity", ""),
        ("mode", "enforce"),
        ("confirmed", confirmed.as_str()),
    ];
    let (st, loc, _) = alice.post("/orgs/acme/signature-rules", &confirm).await;
    assert_eq!((st, loc.as_str()), (303, "/orgs/acme/permissions?done=signature-rule-added"));
    let (_, v) = s.admin("GET", "/api/v1/orgs/acme/settings", None).await;
    assert_eq!(v["signatures"]["rules"][0]["images"], "organization", "{v}");

    // Members see the rule, read-only; they cannot add or remove one.
    let (_, page) = bob.get("/orgs/acme/permissions").await;
    let section = page.split("<h2 id=\"signature-rules-title\">").nth(1).unwrap().split("</section>").next().unwrap();
    assert!(section.contains("<td><code>organization</code></td>") && section.contains("SHA256:"), "{section}");
    assert!(!section.contains("Require a signature") && !section.contains("signature-rules/1/delete"), "{section}");
    assert_eq!(bob.post("/orgs/acme/signature-rules", &form).await.0, 403);
    assert_eq!(bob.post("/orgs/acme/signature-rules/1/delete", &[]).await.0, 403);
    let (ok, out) = skopeo_pull(&gw, &bp, "acme/app:1", &work.path().join("during"));
    assert!(!ok && out.contains("Signature requirement"), "{out}");

    // Bad input is refused with the reason; removing the rule serves bob again.
    let bad = [
        ("images", "org"),
        ("keys", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"),
        ("mode", "enforce"),
    ];
    let (st, _, html) = alice.post("/orgs/acme/signature-rules", &bad).await;
    assert_eq!(st, 400, "{html}");
    assert!(html.contains("signature rule 2: key 1: the public key is neither ECDSA P-256 nor Ed25519"), "{html}");
    assert_eq!(alice.post("/orgs/acme/signature-rules/7/delete", &[]).await.0, 404);
    let (st, loc, _) = alice.post("/orgs/acme/signature-rules/1/delete", &[]).await;
    assert_eq!((st, loc.as_str()), (303, "/orgs/acme/permissions?done=signature-rule-removed"));
    let (ok, out) = skopeo_pull(&gw, &bp, "acme/app:1", &work.path().join("after"));
    assert!(ok, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_adds_lists_and_removes_rules_from_key_files() {
    let s = Server::start().await;
    s.create_user("alice").await;
    acme_with_member_bob(&s).await;
    let work = tempfile::tempdir().unwrap();
    let layout = images::make(&work.path().join("layout"));
    let ap = format!("alice:{}", pw("alice"));
    assert!(skopeo_push(&layout.dir, "tiny", &s.addr(), &ap, "acme/app:1").0);
    let alice_pw = pw("alice");
    let read = json!({"permission": "read"});
    assert_eq!(
        s.api("PUT", "/api/v1/orgs/acme/teams/dev/permissions/app", ("alice", &alice_pw), Some(read)).await.0,
        200
    );
    let keys = Keys::new();
    let cli = |args: &[&str]| {
        let mut c = crate::support::portcullis(work.path());
        c.env("PORTCULLIS_CLIENT__PASSWORD", &alice_pw).args(args).args([
            "--server",
            &s.url(""),
            "--username",
            "alice",
        ]);
        run(&mut c)
    };
    let key = keys.public("a").display().to_string();
    let (ok, out) = cli(&["org", "signatures", "add", "acme", "org", "--key", &key, "--dry-run"]);
    assert!(ok && out.contains("\"images\": \"organization\"") && out.contains("\"mode\": \"dry_run\""), "{out}");
    let (ok, out) = cli(&["org", "signatures", "list", "acme"]);
    assert!(ok && out.contains("\"n\": 1") && out.contains("BEGIN PUBLIC KEY"), "{out}");
    let (ok, out) = cli(&["check", "acme", "bob", "acme/app:1"]);
    assert!(ok, "dry run: allowed with a warning: {out}");
    assert!(out.contains("signature") && out.contains("it has no signature"), "{out}");
    let (ok, out) = cli(&["org", "signatures", "add", "acme", "org", "--key", "/nonexistent.pub"]);
    assert!(!ok && out.contains("cannot read /nonexistent.pub"), "{out}");
    let (ok, out) = cli(&["org", "signatures", "remove", "acme", "2"]);
    assert!(!ok && out.contains("acme has no signature rule 2 (it has 1)"), "{out}");
    let (ok, out) = cli(&["org", "signatures", "remove", "acme", "1"]);
    assert!(ok && out.contains("\"rules\": []"), "{out}");
}
