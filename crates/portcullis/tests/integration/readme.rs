//! The README as a newcomer reads it: its first two blocks of the walkthrough run as written
//! (against the binary under test, on a free port, in a temporary directory), and what it names
//! exists — the image tag is the workspace's version, every script it sends people to is there,
//! and the commands people sign in with are described.

use std::path::Path;
use std::process::Command;

use crate::support::{free_port, run};

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap()
}

/// The `sh` blocks after the heading `title`, up to the next heading of that level.
fn blocks(text: &str, title: &str) -> Vec<String> {
    let section = text.split(title).nth(1).unwrap_or_default();
    let section = section.split("\n## ").next().unwrap_or_default();
    section.split("```sh\n").skip(1).filter_map(|b| b.split("\n```").next()).map(str::to_owned).collect()
}

#[test]
fn what_the_readme_names_exists() {
    let text = readme();
    let version = env!("CARGO_PKG_VERSION");
    let tags: Vec<&str> = text.match_indices("localhost/portcullis:").map(|(i, m)| &text[i + m.len()..]).collect();
    assert!(!tags.is_empty(), "the README shows how to run the image");
    for t in tags {
        let tag: String = t.chars().take_while(|c| c.is_ascii_alphanumeric() || "<>.-".contains(*c)).collect();
        assert!(
            tag == version || tag == "<version>",
            "README runs localhost/portcullis:{tag}, the workspace is {version}"
        );
    }
    for (i, _) in text.match_indices("portcullis-0.") {
        let name: String = text[i..].chars().take_while(|c| !c.is_whitespace() && *c != '`').collect();
        assert!(name.starts_with(&format!("portcullis-{version}-")), "{name} is not of version {version}");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for (i, _) in text.match_indices("scripts/") {
        let name: String = text[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || "/._-".contains(*c)).collect();
        let name = name.trim_end_matches('.');
        let meta = std::fs::metadata(root.join(name)).unwrap_or_else(|e| panic!("README names {name}: {e}"));
        assert!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0, "{name} is not executable");
    }
    for command in ["portcullis login", "portcullis logout", "portcullis doctor", "portcullis client-config"] {
        assert!(text.contains(command), "the README does not mention `{command}`");
    }
}

#[test]
fn the_walkthrough_runs_as_written() {
    let text = readme();
    let steps = blocks(&text, "## Walkthrough");
    assert!(steps.len() >= 2, "the walkthrough's first blocks: {steps:?}");
    let work = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let bin = env!("CARGO_BIN_EXE_portcullis");
    // the same commands; only where they run differs (the binary under test, a free port, the
    // temporary directory), and curl fails on an error answer, as a reader would notice
    let script = steps[..2]
        .join("\n")
        .replace("cargo run --release -p portcullis --", bin)
        .replace("./walkthrough-data", &work.path().join("data").display().to_string())
        .replace("/tmp/portcullis-example", &work.path().join("example").display().to_string())
        .replace("dir:/tmp/app", &format!("dir:{}", work.path().join("app").display()))
        .replace("localhost:5000", &addr)
        .replace("127.0.0.1:5000", &addr);
    let serve_line = script.lines().position(|l| l.contains(" serve ")).expect("the block starts the server");
    let mut lines: Vec<String> = script.lines().map(str::to_owned).collect();
    lines.insert(
        serve_line + 1,
        format!("for i in $(seq 100); do command curl -s -o /dev/null http://{addr}/healthz && break; sleep 0.1; done"),
    );
    let script = format!(
        "set -euo pipefail\ncurl() {{ command curl -fsS \"$@\"; echo; }}\ntrap 'kill %1 2>/dev/null' EXIT\n\
         export PORTCULLIS_LISTEN={addr}\n{}\n",
        lines.join("\n")
    );
    // run from the checkout's root, where the README's commands are typed
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let (ok, out) = run(Command::new("bash").arg("-c").arg(&script).current_dir(root));
    assert!(ok, "the walkthrough failed:\n{script}\n{out}");
    assert!(out.contains("\"scope\":\"read-write\"") || out.contains("\"scope\": \"read-write\""), "{out}");
    assert!(work.path().join("app/manifest.json").exists(), "bob pulled acme/app:1: {out}");
}
