//! Faults and offline tools: a push killed with SIGKILL leaves nothing visible and fsck clean;
//! fsck finds and quarantines corrupted blobs; reset-password and config check work offline.

use std::io::Write;
use std::process::Stdio;

use crate::support::{Server, portcullis, pw, run, sha256};

#[tokio::test]
async fn sigkill_mid_push_leaves_nothing_visible() {
    let s = Server::start().await;
    s.create_user("alice").await;
    let t = s.token(Some(("alice", &pw("alice"))), &["repository:alice/app:pull,push"]).await;
    // a committed blob, then an upload cut by SIGKILL halfway
    let kept = sha256(b"kept");
    assert_eq!(
        s.req("POST", &format!("/v2/alice/app/blobs/uploads/?digest={kept}"), Some(&t))
            .await
            .body("kept")
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    let r = s.req("POST", "/v2/alice/app/blobs/uploads/", Some(&t)).await.send().await.unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let big = vec![7u8; 8 << 20];
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|x| (x, rx))
    }));
    let req = s.req("PATCH", &loc, Some(&t)).await.body(body).send();
    let pending = tokio::spawn(req);
    tx.send(Ok(big[..4 << 20].to_vec())).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let dir = s.kill();
    drop(tx);
    let _ = pending.await;
    let s = Server::start_in(dir).await;
    let t = s.token(Some(("alice", &pw("alice"))), &["repository:alice/app:pull,push"]).await;
    let whole = sha256(&big);
    assert_eq!(
        s.req("HEAD", &format!("/v2/alice/app/blobs/{whole}"), Some(&t)).await.send().await.unwrap().status(),
        404
    );
    assert_eq!(
        s.req("HEAD", &format!("/v2/alice/app/blobs/{kept}"), Some(&t)).await.send().await.unwrap().status(),
        200
    );
    // the interrupted upload can be finished after the restart (hash state rebuilt)
    let st = s.req("GET", &loc, Some(&t)).await.send().await.unwrap();
    assert_eq!(st.status(), 204, "the upload survived the kill");
    let range = st.headers()["range"].to_str().unwrap().to_owned();
    let have: usize = match range.as_str() {
        "0-0" => 0,
        r => r.split('-').nth(1).unwrap().parse::<usize>().unwrap() + 1,
    };
    assert!(have <= 4 << 20, "no more than was sent: {range}");
    let r =
        s.req("PUT", &format!("{loc}?digest={whole}"), Some(&t)).await.body(big[have..].to_vec()).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(s.get_bytes(&format!("/v2/alice/app/blobs/{whole}"), &t).await, big, "byte-identical");
    let dir = s.kill();
    let (ok, out) = run(portcullis(dir.path()).arg("fsck"));
    assert!(ok, "{out}");
    assert!(out.contains(" 0 bad"), "{out}");
}

#[tokio::test]
async fn fsck_finds_and_quarantines_corruption() {
    let s = Server::start().await;
    s.create_user("alice").await;
    let t = s.token(Some(("alice", &pw("alice"))), &["repository:alice/app:pull,push"]).await;
    let d = sha256(b"precious");
    assert_eq!(
        s.req("POST", &format!("/v2/alice/app/blobs/uploads/?digest={d}"), Some(&t))
            .await
            .body("precious")
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    let dir = s.kill();
    let data = dir.path();
    let hex = &d[7..];
    std::fs::write(data.join("blobs/sha256").join(&hex[..2]).join(hex), b"tampered").unwrap();
    let (ok, out) = run(portcullis(data).arg("fsck"));
    assert!(!ok && out.contains(&format!("BAD {d}")), "{out}");
    let (ok, out) = run(portcullis(data).args(["fsck", "--quarantine"]));
    assert!(ok, "{out}");
    let (ok, out) = run(portcullis(data).arg("fsck"));
    assert!(ok && out.contains("0 bad"), "{out}");
}

#[tokio::test]
async fn offline_admin_tools() {
    let s = Server::start().await;
    s.create_user("alice").await;
    let dir = s.kill();
    let data = dir.path().to_owned();
    let mut child = portcullis(&data)
        .args(["admin", "reset-password", "alice"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"brand-new-password\n").unwrap();
    assert!(child.wait().unwrap().success());
    let (ok, out) = run(portcullis(&data).args(["admin", "reset-password", "nobody"]).stdin(Stdio::null()));
    assert!(!ok, "{out}");
    // config check masks secrets and rejects unknown keys
    let (ok, out) =
        run(portcullis(&data).args(["config", "check"]).env("PORTCULLIS_ADMIN_PASSWORD", "topsecret-value"));
    assert!(ok && out.contains("admin_password = \"***\"") && !out.contains("topsecret"), "{out}");
    let (ok, out) = run(portcullis(&data).args(["config", "check"]).env("PORTCULLIS_LISTN", "x"));
    assert!(!ok && out.contains("listn"), "{out}");
    // the new password works
    let s = Server::start_in(dir).await;
    assert_eq!(s.api("GET", "/api/v1/me", ("alice", "brand-new-password"), None).await.0, 200);
}
