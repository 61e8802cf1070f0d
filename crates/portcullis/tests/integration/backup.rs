//! Backup and restore: a backup taken while pushes go on restores into a new data directory
//! that serves every image it recorded byte for byte (skopeo pulls one) and passes fsck; a
//! damaged or incomplete backup is refused and leaves the target empty.

use std::path::Path;

use crate::images;
use crate::support::{Server, portcullis, pw, run, skopeo_pull, skopeo_push};
use crate::v2::push_image;

const REPO: &str = "alice/app";

async fn tags(s: &Server, t: &str) -> Vec<String> {
    let r = s.req("GET", &format!("/v2/{REPO}/tags/list"), Some(t)).await.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    v["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()).collect()
}

fn restore(from: &Path, to: &Path) -> (bool, String) {
    run(portcullis(to).args(["restore", "--from"]).arg(from))
}

fn is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).map(|mut d| d.next().is_none()).unwrap_or(true)
}

#[tokio::test]
async fn a_backup_taken_during_pushes_restores_byte_identical() {
    let s = Server::start().await;
    s.create_user("alice").await;
    let creds = format!("alice:{}", pw("alice"));
    let t = s.token(Some(("alice", &pw("alice"))), &[&format!("repository:{REPO}:pull,push")]).await;
    let work = tempfile::tempdir().unwrap();
    let layout = images::make(&work.path().join("layout"));
    let (ok, out) = skopeo_push(&layout.dir, "multi", &s.addr(), &creds, "alice/multi:1");
    assert!(ok, "{out}");
    for i in 0..5 {
        push_image(&s, &t, REPO, &format!("before-{i}"), format!("layer before {i}").as_bytes()).await;
    }
    // pushes keep going while the backup runs
    let backup = work.path().join("backup");
    let mut cmd = portcullis(s.dir.path());
    cmd.args(["backup", "--to"]).arg(&backup);
    let taking = tokio::task::spawn_blocking(move || run(&mut cmd));
    for i in 0..40 {
        push_image(&s, &t, REPO, &format!("during-{i}"), &vec![i as u8; 64 << 10]).await;
    }
    let (ok, out) = taking.await.unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("backed up"), "{out}");

    let restored = tempfile::tempdir().unwrap();
    let (ok, out) = restore(&backup, restored.path());
    assert!(ok, "{out}");
    let r = Server::start_in(restored).await;
    let rt = r.token(Some(("alice", &pw("alice"))), &[&format!("repository:{REPO}:pull")]).await;
    let got = tags(&r, &rt).await;
    for i in 0..5 {
        assert!(got.contains(&format!("before-{i}")), "pushed before the backup: {got:?}");
    }
    // a snapshot of one moment: the pushes it holds are the first n, in order
    let during = got.iter().filter(|t| t.starts_with("during-")).count();
    for i in 0..during {
        assert!(got.contains(&format!("during-{i}")), "a consistent snapshot: {got:?}");
    }
    for tag in &got {
        let path = format!("/v2/{REPO}/manifests/{tag}");
        let (a, b) = (s.get_bytes(&path, &t).await, r.get_bytes(&path, &rt).await);
        assert_eq!(a, b, "{tag}");
        let m: serde_json::Value = serde_json::from_slice(&b).unwrap();
        for d in [&m["config"]["digest"], &m["layers"][0]["digest"]] {
            let blob = format!("/v2/{REPO}/blobs/{}", d.as_str().unwrap());
            assert_eq!(s.get_bytes(&blob, &t).await, r.get_bytes(&blob, &rt).await, "{tag} {d}");
        }
    }
    // a real client pulls the multi-platform image from the restored instance
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    let (ok, out) = skopeo_pull(&s.addr(), &creds, "alice/multi:1", &a);
    assert!(ok, "{out}");
    let (ok, out) = skopeo_pull(&r.addr(), &creds, "alice/multi:1", &b);
    assert!(ok, "{out}");
    let read = |d: &Path| {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(read(&a), read(&b));
    let dir = r.kill();
    let (ok, out) = run(portcullis(dir.path()).args(["fsck"]));
    assert!(ok, "{out}");
}

#[tokio::test]
async fn damaged_or_incomplete_backups_are_refused() {
    let s = Server::start().await;
    s.create_user("alice").await;
    let t = s.token(Some(("alice", &pw("alice"))), &[&format!("repository:{REPO}:pull,push")]).await;
    let (_, layer, _) = push_image(&s, &t, REPO, "1", b"the layer's bytes").await;
    let work = tempfile::tempdir().unwrap();
    let take = |name: &str| {
        let b = work.path().join(name);
        let (ok, out) = run(portcullis(s.dir.path()).args(["backup", "--copy", "--to"]).arg(&b));
        assert!(ok, "{out}");
        assert!(out.contains("0 hard-linked"), "--copy copies: {out}");
        b
    };
    // a backup is never written over another
    let b = take("good");
    let (ok, out) = run(portcullis(s.dir.path()).args(["backup", "--to"]).arg(&b));
    assert!(!ok && out.contains("not empty"), "{out}");

    let flip = |p: &Path| {
        let mut bytes = std::fs::read(p).unwrap();
        let n = bytes.len() / 2;
        bytes[n] ^= 1;
        std::fs::write(p, bytes).unwrap();
    };
    let blob = |b: &Path| b.join("blobs/sha256").join(&layer[7..9]).join(&layer[7..]);
    type Damage<'a> = Box<dyn Fn(&Path) + 'a>;
    let cases: Vec<(&str, Damage, &str)> = vec![
        ("blob", Box::new(|b: &Path| flip(&blob(b))), "is damaged"),
        ("database", Box::new(|b: &Path| flip(&b.join("meta.db"))), "the database is damaged"),
        ("missing-blob", Box::new(|b: &Path| std::fs::remove_file(blob(b)).unwrap()), "cannot be read"),
        ("no-list", Box::new(|b: &Path| std::fs::remove_file(b.join("backup.json")).unwrap()), "not a complete backup"),
        ("bad-list", Box::new(|b: &Path| std::fs::write(b.join("backup.json"), "{\"format\":").unwrap()), "damaged"),
    ];
    for (name, damage, says) in cases {
        let b = take(name);
        damage(&b);
        let target = tempfile::tempdir().unwrap();
        let (ok, out) = restore(&b, target.path());
        assert!(!ok, "{name}: {out}");
        assert!(out.contains(says), "{name}: {out}");
        assert!(is_empty(target.path()), "{name}: nothing restored");
    }
    // a restore never writes over a data directory
    let (ok, out) = restore(&work.path().join("good"), s.dir.path());
    assert!(!ok && out.contains("not empty"), "{out}");
    let target = tempfile::tempdir().unwrap();
    let (ok, out) = restore(&work.path().join("good"), target.path());
    assert!(ok, "{out}");
}
