//! Kubernetes admission: `AdmissionReview` bodies as the API server sends them (Kubernetes' own
//! round-trip fixtures in `k8s/`, and the documented `admission.k8s.io/v1` request with a Pod,
//! a Deployment and others), the same policy as at
//! pull for the pod's service account, the JSONPatch applied by an independent implementation
//! (Python's `jsonpatch`), and skopeo pulling the rewritten, pinned references.

use std::process::Command;

use serde_json::{Value, json};

use crate::proxy::setup_at;
use crate::support::{free_port, pw, run, skopeo_pull};
use crate::workloads::TestIssuer;

const TOKEN: &str = "api-server-admission-token-0123456789";

fn review(uid: &str, kind: &str, namespace: &str, object: Value) -> Value {
    let (group, resource) = match kind {
        "Pod" => ("", "pods"),
        "Deployment" => ("apps", "deployments"),
        "ConfigMap" => ("", "configmaps"),
        _ => ("batch", "cronjobs"),
    };
    let version = "v1";
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "requestResource": {"group": group, "version": version, "resource": resource},
            "name": object["metadata"]["name"],
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "jane", "uid": "014fbff9a07c", "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        }
    })
}

fn pod(name: &str, sa: Option<&str>, images: &[&str]) -> Value {
    let containers: Vec<Value> =
        images.iter().enumerate().map(|(i, im)| json!({"name": format!("c{i}"), "image": im})).collect();
    let mut spec = json!({"containers": containers, "initContainers": [{"name": "init", "image": "library/tiny:1"}]});
    if let Some(sa) = sa {
        spec["serviceAccountName"] = sa.into();
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
}

async fn send(gw: &str, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
    let mut r = reqwest::Client::new().post(format!("http://{gw}{path}")).json(body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// The object with the response's JSONPatch applied by Python's `jsonpatch`.
fn patched(object: &Value, response: &Value) -> Value {
    use base64::Engine;
    assert_eq!(response["patchType"], "JSONPatch", "{response}");
    let patch = base64::engine::general_purpose::STANDARD.decode(response["patch"].as_str().unwrap()).unwrap();
    let script = "import json, sys, jsonpatch\n\
                  doc, patch = json.loads(sys.argv[1]), json.loads(sys.argv[2])\n\
                  print(json.dumps(jsonpatch.apply_patch(doc, patch)))";
    let (ok, out) =
        run(Command::new("python3").args(["-c", script, &object.to_string(), &String::from_utf8(patch).unwrap()]));
    assert!(ok, "{out}");
    serde_json::from_str(&out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_decided_at_admission_as_at_pull_and_pinned_to_what_was_decided() {
    let issuer = TestIssuer::start().await;
    let port = free_port();
    let gw = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admission-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let issuers = format!("[{{name=\"k8s\",issuer=\"{}\"}}]", issuer.url);
    let e = setup_at(
        port,
        &[
            ("PORTCULLIS_AUTH__WORKLOAD_ISSUERS", issuers.as_str()),
            ("PORTCULLIS_ADMISSION__ISSUER", "k8s"),
            ("PORTCULLIS_ADMISSION__TOKEN_FILE", token_file.to_str().unwrap()),
            ("PORTCULLIS_ADMISSION__GATEWAY", gw.as_str()),
        ],
    )
    .await;
    let s = &e.s;
    crate::support::acme_with_member_bob(s).await;
    let ap = pw("alice");
    let alice = ("alice", ap.as_str());
    assert_eq!(s.api("POST", "/api/v1/orgs/acme/teams", alice, Some(json!({"name": "ci"}))).await.0, 201);
    let settings = json!({
        "restricted_images": {"enabled": true},
        "workloads": {"rules": [
            {"issuer": "k8s", "claims": {"namespace": "ci-*", "serviceaccount": "builder"}, "teams": ["ci"]},
            {"issuer": "k8s", "claims": {"namespace": "dev-*"}, "teams": ["dev"]},
        ]},
    });
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(settings)).await.0, 200);
    let community = json!({"restricted_images": {"allow_community": true}});
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/teams/ci/settings", alice, Some(community)).await.0, 200);

    // the API server must authenticate
    let web = pod("web", Some("builder"), &["someone/app:1"]);
    let r = review("705ab4f5-6393-11e8-b7cc-42010a800002", "Pod", "ci-web", web.clone());
    assert_eq!(send(&gw, "/admission/mutate", None, &r).await.0, 401);
    assert_eq!(send(&gw, "/admission/mutate", Some("not-the-token-0123456789"), &r).await.0, 401);

    // allowed, every image rewritten to the gateway and pinned; the uid echoed
    let (st, v) = send(&gw, "/admission/mutate", Some(TOKEN), &r).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!((v["apiVersion"].as_str(), v["kind"].as_str()), (Some("admission.k8s.io/v1"), Some("AdmissionReview")));
    let resp = &v["response"];
    assert_eq!(
        (resp["uid"].as_str(), resp["allowed"].as_bool()),
        (Some("705ab4f5-6393-11e8-b7cc-42010a800002"), Some(true)),
        "{v}"
    );
    let admitted = patched(&web, resp);
    let app = admitted["spec"]["containers"][0]["image"].as_str().unwrap().to_owned();
    let init = admitted["spec"]["initContainers"][0]["image"].as_str().unwrap().to_owned();
    assert!(app.starts_with(&format!("{gw}/someone/app@sha256:")), "{admitted}");
    assert!(init.starts_with(&format!("{gw}/library/tiny@sha256:")), "{admitted}");
    // what was admitted is what the pod's service account then pulls through the gateway
    let sa = format!("workload:{}", issuer.sa_token("ci-web", "builder"));
    for (i, image) in [&app, &init].into_iter().enumerate() {
        let dst = e.work.path().join(format!("admitted{i}"));
        let (ok, out) = run(Command::new("skopeo").args([
            "copy",
            "-q",
            "--src-tls-verify=false",
            "--src-creds",
            &sa,
            &format!("docker://{image}"),
            &format!("oci:{}", dst.display()),
        ]));
        assert!(ok, "{image}: {out}");
        let index: Value = serde_json::from_slice(&std::fs::read(dst.join("index.json")).unwrap()).unwrap();
        assert_eq!(index["manifests"][0]["digest"].as_str(), image.split('@').nth(1), "the digest admitted is served");
    }
    // admitted again: already the gateway's pinned names, nothing to change
    let again = review("uid-2", "Pod", "ci-web", admitted.clone());
    let (_, v) = send(&gw, "/admission/mutate", Some(TOKEN), &again).await;
    assert_eq!(v["response"]["allowed"], true, "{v}");
    assert!(v["response"].get("patch").is_none(), "idempotent: {v}");
    // the validating webhook decides and changes nothing
    let (_, v) = send(&gw, "/admission/validate", Some(TOKEN), &r).await;
    assert_eq!(v["response"]["allowed"], true, "{v}");
    assert!(v["response"].get("patch").is_none(), "{v}");
    let entry =
        crate::support::audit_entry(s, "admission", |e| e["actor"] == "k8s:system:serviceaccount:ci-web:builder").await;
    let detail = entry["detail"].as_str().unwrap();
    assert!(detail.contains("\"namespace\":\"ci-web\"") && detail.contains("\"object\":\"web\""), "{entry}");

    // a namespace whose team may not pull community images: refused with the pull's own message
    let dev = review("uid-3", "Pod", "dev-x", pod("tool", None, &["someone/app:1"]));
    let (_, v) = send(&gw, "/admission/mutate", Some(TOKEN), &dev).await;
    assert_eq!(v["response"]["allowed"], false, "{v}");
    assert_eq!(v["response"]["status"]["code"], 403);
    let message = v["response"]["status"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("community image docker.io/someone/app is not allowed for members of acme"), "{message}");
    let creds = format!("workload:{}", issuer.sa_token("dev-x", "default"));
    let (ok, out) = skopeo_pull(&gw, &creds, "someone/app:1", &e.work.path().join("refused"));
    assert!(!ok && out.contains(&message), "the same words at pull: {out}\nvs {message}");
    // a namespace no rule names: refused, saying what did not match
    let other = review("uid-4", "Pod", "default", pod("x", None, &["library/tiny:1"]));
    let (_, v) = send(&gw, "/admission/validate", Some(TOKEN), &other).await;
    let m = v["response"]["status"]["message"].as_str().unwrap_or_default();
    assert!(v["response"]["allowed"] == false && m.contains("matches no workload rule"), "{v}");

    // pod templates: a Deployment's images are reviewed and patched where they are
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "api"}}, "template": {
            "metadata": {"labels": {"app": "api"}},
            "spec": {"serviceAccountName": "builder", "containers": [{"name": "api", "image": "docker.io/library/tiny:1"}]}}},
    });
    let (_, v) =
        send(&gw, "/admission/mutate", Some(TOKEN), &review("uid-5", "Deployment", "ci-api", deployment.clone())).await;
    let admitted = patched(&deployment, &v["response"]);
    let image = admitted["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap();
    assert!(image.starts_with(&format!("{gw}/library/tiny@sha256:")), "{admitted}");
    assert_eq!(admitted["spec"]["replicas"], 2, "nothing else changes");

    // a signature rule over community images: the unsigned image is refused at creation, with
    // the words a pull of it gets
    let key = e.work.path().join("cosign");
    let (ok, out) = run(Command::new("sh").arg("-c").arg(format!(
        "openssl ecparam -name prime256v1 -genkey -noout -out {0}.key && openssl ec -in {0}.key -pubout -out {0}.pub",
        key.display()
    )));
    assert!(ok, "{out}");
    let pem = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let rules = json!({"signatures": {"rules": [{"images": "community", "keys": [pem]}]}});
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(rules)).await.0, 200);
    let (_, v) = send(&gw, "/admission/mutate", Some(TOKEN), &review("uid-9", "Pod", "ci-web", web.clone())).await;
    assert_eq!(v["response"]["allowed"], false, "{v}");
    let message = v["response"]["status"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("Signature requirement") && message.contains("it has no signature"), "{message}");
    let (ok, out) = skopeo_pull(&gw, &sa, "someone/app:1", &e.work.path().join("unsigned"));
    assert!(!ok && out.contains(&message), "the same words at pull: {out}\nvs {message}");
    let no_rules = json!({"signatures": {"rules": []}});
    assert_eq!(s.api("PUT", "/api/v1/orgs/acme/settings", alice, Some(no_rules)).await.0, 200);

    // bad input: a clear refusal, bounded work, never a 5xx or an allow
    let (st, _) = send(&gw, "/admission/mutate", Some(TOKEN), &json!("not a review")).await;
    assert_eq!(st, 400);
    let (st, _) = send(
        &gw,
        "/admission/mutate",
        Some(TOKEN),
        &json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {"uid": "u"}}),
    )
    .await;
    assert_eq!(st, 400);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}});
    let (_, v) = send(&gw, "/admission/mutate", Some(TOKEN), &review("uid-6", "ConfigMap", "ci-web", cm)).await;
    assert_eq!(v["response"]["allowed"], false, "{v}");
    let images: Vec<&str> = vec!["library/tiny:1"; 1000];
    let (st, v) = send(
        &gw,
        "/admission/mutate",
        Some(TOKEN),
        &review("uid-7", "Pod", "ci-web", pod("big", Some("builder"), &images)),
    )
    .await;
    assert_eq!(st, 200);
    let m = v["response"]["status"]["message"].as_str().unwrap_or_default();
    assert!(v["response"]["allowed"] == false && m.contains("at most 256"), "{v}");
    // Kubernetes' own fixtures (k8s/README.md): the v1 review with a Pod that sets every field
    let fixture = |name: &str| -> Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/k8s").join(name);
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    let mut full = fixture("core.v1.Pod.json");
    full["metadata"]["namespace"] = "ci-web".into();
    full["spec"]["serviceAccountName"] = "builder".into();
    for (field, image) in [
        ("initContainers", "library/tiny:1"),
        ("containers", "someone/app:1"),
        ("ephemeralContainers", "library/tiny:1"),
    ] {
        for c in full["spec"][field].as_array_mut().unwrap() {
            c["image"] = image.into();
        }
    }
    let mut r = fixture("admission.k8s.io.v1.AdmissionReview.json");
    r["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "Pod"});
    r["request"]["operation"] = "CREATE".into();
    r["request"]["namespace"] = "ci-web".into();
    r["request"]["object"] = full.clone();
    let (st, v) = send(&gw, "/admission/mutate", Some(TOKEN), &r).await;
    assert_eq!(
        (st, v["response"]["uid"].as_str(), v["response"]["allowed"].as_bool()),
        (200, Some("uidValue"), Some(true)),
        "{v}"
    );
    let admitted = patched(&full, &v["response"]);
    for field in ["initContainers", "containers", "ephemeralContainers"] {
        let image = admitted["spec"][field][0]["image"].as_str().unwrap();
        assert!(image.starts_with(&format!("{gw}/")) && image.contains("@sha256:"), "{field}: {image}");
    }
    // as the fixture is (placeholders: no operation the API server sends), of a custom kind, and
    // the v1beta1 one
    let raw = fixture("admission.k8s.io.v1.AdmissionReview.json");
    assert_eq!(send(&gw, "/admission/validate", Some(TOKEN), &raw).await.0, 400);
    let mut gone = raw.clone();
    gone["request"]["operation"] = "DELETE".into();
    assert_eq!(send(&gw, "/admission/validate", Some(TOKEN), &gone).await.1["response"]["allowed"], true);
    let mut custom = raw;
    custom["request"]["operation"] = "CREATE".into();
    let (st, v) = send(&gw, "/admission/validate", Some(TOKEN), &custom).await;
    assert_eq!((st, v["response"]["allowed"].as_bool()), (200, Some(false)), "{v}");
    assert!(v["response"]["status"]["message"].as_str().unwrap().contains("\"kindValue\" is none of them"), "{v}");
    let (st, _) =
        send(&gw, "/admission/validate", Some(TOKEN), &fixture("admission.k8s.io.v1beta1.AdmissionReview.json")).await;
    assert_eq!(st, 400);
    let malformed = json!({"metadata": {"name": "m"}, "spec": {"containers": "not a list"}});
    let (st, v) = send(&gw, "/admission/mutate", Some(TOKEN), &review("uid-10", "Pod", "ci-web", malformed)).await;
    assert!(st == 400 && v["error"].as_str().unwrap().contains("request.object is not a Pod"), "{st} {v}");
    let bad = review("uid-8", "Pod", "ci-web", pod("bad", Some("builder"), &["UPPER/Case:1"]));
    let (st, v) = send(&gw, "/admission/mutate", Some(TOKEN), &bad).await;
    assert_eq!((st, v["response"]["allowed"].as_bool()), (200, Some(false)), "{v}");
}
