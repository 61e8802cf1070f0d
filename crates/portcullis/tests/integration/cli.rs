//! The command line as a newcomer uses it: `login` once (credentials checked, saved only for the
//! user), then API commands without environment variables; `--server` and `--username` for
//! every API command; `check` answering in one line with the step that decided; `config check`
//! explaining the effective upstreams and cache; `serve --listen localhost:PORT`.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use crate::support::{Server, portcullis, pw, run};

/// The binary with a private configuration directory (where `login` saves).
fn cli(home: &std::path::Path) -> Command {
    let mut c = portcullis(home);
    c.env("XDG_CONFIG_HOME", home.join("config"));
    c
}

/// `cli` with `stdin` written to standard input.
fn with_stdin(mut c: Command, stdin: &str) -> (bool, String) {
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_once_then_api_commands_with_flags() {
    let s = Server::start().await;
    s.create_user("alice").await;
    crate::support::acme_with_member_bob(&s).await;
    let home = tempfile::tempdir().unwrap();
    // a wrong password saves nothing
    let mut c = cli(home.path());
    c.args(["login", "--server", &s.url(""), "--username", "alice", "--password-stdin"]);
    let (ok, out) = with_stdin(c, "wrong-password\n");
    assert!(!ok && out.contains("401"), "{out}");
    let saved = home.path().join("config/portcullis/login.toml");
    assert!(!saved.exists());
    // the right one is checked and saved, for the user alone
    let mut c = cli(home.path());
    c.args(["login", "--server", &s.url(""), "--username", "alice", "--password-stdin"]);
    let (ok, out) = with_stdin(c, &format!("{}\n", pw("alice")));
    assert!(ok && out.contains("Signed in to") && out.contains("as alice"), "{out}");
    assert_eq!(std::fs::metadata(&saved).unwrap().permissions().mode() & 0o777, 0o600);
    // API commands now need nothing else
    let (ok, out) = run(cli(home.path()).args(["org", "settings", "get", "acme"]));
    assert!(ok && out.contains("restricted_images"), "{out}");
    // --username picks another account for one command (its password: the environment)
    let (ok, out) = run(cli(home.path()).env("PORTCULLIS_CLIENT__PASSWORD", pw("bob")).args([
        "org",
        "settings",
        "set",
        "acme",
        r#"{"restricted_images":{"enabled":true}}"#,
        "--username",
        "bob",
    ]));
    assert!(!ok && out.contains("403") && out.contains("only owners of acme"), "bob is not an owner: {out}");
    // check: one line first, the deciding step, and the exit status
    let (ok, out) = run(cli(home.path()).args(["check", "acme", "bob", "acme/secret:1"]));
    let first = out.lines().next().unwrap_or_default();
    assert!(!ok, "denied: exit status 1: {out}");
    assert!(first.starts_with("bob may not pull acme/secret:1: bob may not pull acme/secret"), "{out}");
    assert!(out.lines().any(|l| l.trim_start().starts_with("repository") && l.contains("deny")), "{out}");
    let (ok, out) = run(cli(home.path()).args([
        "org",
        "exceptions",
        "add",
        "acme",
        "docker.io/someone/*",
        "--reason",
        "vetted",
        "--expires-at",
        "1798761600",
    ]));
    assert!(ok, "{out}");
    let (ok, out) =
        run(cli(home.path()).args(["org", "settings", "set", "acme", r#"{"restricted_images":{"enabled":true}}"#]));
    assert!(ok, "{out}");
    let (ok, out) = run(cli(home.path()).args(["check", "acme", "bob", "someone/app:1"]));
    let first = out.lines().next().unwrap_or_default();
    assert!(ok && first.starts_with("bob may pull docker.io/someone/app:1: allowed by exception"), "{out}");
    assert!(first.contains("of acme (vetted), expires 2027-01-01"), "{out}");
    let (ok, out) = run(cli(home.path()).args(["check", "--json", "acme", "bob", "someone/app:1"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(ok && v["effect"] == "allow" && v["orgs"][0]["category"] == "community", "{v}");
    // logout forgets
    let (ok, out) = run(cli(home.path()).arg("logout"));
    assert!(ok && !saved.exists(), "{out}");
    let (ok, out) = run(cli(home.path()).args(["org", "--server", &s.url(""), "settings", "get", "acme"]));
    assert!(!ok && out.contains("portcullis login") && out.contains("PORTCULLIS_CLIENT__PASSWORD"), "{out}");
    // the client flags belong to the commands that talk to a server, and show in their help only
    for local in ["serve", "fsck", "backup", "doctor"] {
        let (ok, help) = run(cli(home.path()).args([local, "--help"]));
        assert!(ok && !help.contains("--server") && !help.contains("--username"), "{local}: {help}");
    }
    for remote in [&["login"][..], &["org", "settings"], &["check"], &["publishers", "list"]] {
        let (ok, help) = run(cli(home.path()).args(remote).arg("--help"));
        assert!(ok && help.contains("--server") && help.contains("--username"), "{remote:?}: {help}");
    }
    // the data directory is a flag of the commands that use it, not of the API ones
    let (ok, out) = run(cli(home.path()).args(["org", "settings", "get", "acme", "--data-dir", "/tmp/x"]));
    assert!(!ok && out.contains("--data-dir"), "{out}");
}

/// Output into a pipe whose reader is gone (`portcullis config check | head -0`) ends the command
/// quietly, as Unix tools do: no panic about a broken pipe.
#[test]
fn a_closed_pipe_ends_a_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .env_clear()
        .args(["config", "check", "--data-dir"])
        .arg(dir.path())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked") && stderr.is_empty(), "{stderr}");
    assert_eq!(out.status.signal(), Some(13), "ended by SIGPIPE like cat or ls: {:?}", out.status);
}

#[tokio::test]
async fn config_check_explains_and_serve_takes_host_names() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = run(Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .env_clear()
        .env("PORTCULLIS_PROXY__CACHE_MAX_BYTES", "0")
        .args(["config", "check", "--data-dir"])
        .arg(dir.path()));
    assert!(ok, "{out}");
    assert!(out.contains("docker.io -> https://registry-1.docker.io (built in)"), "{out}");
    assert!(out.contains("cache_max_bytes = 0: the cache of upstream images has no size limit"), "{out}");
    assert!(out.contains("API commands talk to http://127.0.0.1:5000"), "{out}");
    // a typo is named with the line and a suggestion
    let conf = dir.path().join("c.toml");
    std::fs::write(&conf, "[proxy]\ntag_ttl = 60\n").unwrap();
    let (ok, out) = run(Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .env_clear()
        .arg("--config")
        .arg(&conf)
        .args(["config", "check"]));
    assert!(!ok && out.contains("unknown key `proxy.tag_ttl`") && out.contains("line 2"), "{out}");
    assert!(out.contains("did you mean `tag_ttl_secs`?"), "{out}");
    // --version names the commit
    let (ok, out) = run(Command::new(env!("CARGO_BIN_EXE_portcullis")).arg("--version"));
    assert!(ok && out.contains("(commit "), "{out}");
    // serve --listen localhost:PORT
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = portcullis(dir.path())
        .args(["serve", "--listen", &format!("localhost:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    crate::support::wait_for_port(port, "serve on localhost", 20).await;
    let r = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await.unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn the_walkthrough_image_is_built_offline_and_pushed() {
    let s = Server::start().await;
    s.create_user("alice").await;
    s.create_org("acme", "alice").await;
    let work = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/example-image.sh");
    let (ok, out) = run(Command::new(script).arg(work.path()));
    assert!(ok, "{out}");
    let creds = format!("alice:{}", pw("alice"));
    let (ok, out) = run(Command::new("skopeo").args([
        "copy",
        "-q",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        &format!("docker-archive:{}", work.path().join("app.tar").display()),
        &format!("docker://{}/acme/app:1", s.addr()),
    ]));
    assert!(ok, "push of app.tar: {out}");
    let (ok, out) = crate::support::skopeo_pull(&s.addr(), &creds, "acme/app:1", &work.path().join("pulled"));
    assert!(ok, "{out}");
}
