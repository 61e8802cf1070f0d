//! LDAP sign-in against a real OpenLDAP server (Debian `slapd`, started by the test with a small
//! directory and a test CA): docker login and skopeo with the directory's password over
//! StartTLS, the `acme:dev` group making the user a member of team `dev` once acme delegated its
//! teams to LDAP (groups of orgs that did not delegate, and `acme:owners` without the opt-in,
//! change nothing; a name differing from a local account's only in case is that account; a SCIM
//! account signs in through LDAP), the team (whose image they then
//! pull), a wrong password and a filter injection refused like any bad password, and a directory
//! that is down answering 503 while the administrator still signs in.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::json;

use crate::support::{ADMIN_PW, Server, free_port, pw, run, skopeo_pull, wait_for_port};
use crate::v2::push_image;

const SUFFIX: &str = "dc=example,dc=org";
const ROOT_PW: &str = "slapd-root-password-1";

/// slapd on a free loopback port with StartTLS, stopped on drop.
struct Slapd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let (ok, out) = run(Command::new("openssl").current_dir(dir).args(args));
    assert!(ok, "openssl {args:?}: {out}");
}

impl Slapd {
    async fn start() -> Slapd {
        assert!(
            Path::new("/usr/sbin/slapd").exists(),
            "slapd is not installed; .ci/run (scripts/install-deps.sh) installs it"
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // a test CA and a server certificate for 127.0.0.1
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=portcullis test LDAP CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        );
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "key.pem",
                "-out",
                "req.pem",
            ],
        );
        std::fs::write(d.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "req.pem",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
                "-out",
                "cert.pem",
            ],
        );
        std::fs::create_dir_all(d.join("db")).unwrap();
        let conf = format!(
            "include /etc/ldap/schema/core.schema\ninclude /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\ninclude /etc/ldap/schema/nis.schema\n\
             modulepath /usr/lib/ldap\nmoduleload back_mdb\npidfile {d}/slapd.pid\n\
             TLSCACertificateFile {d}/ca.pem\nTLSCertificateFile {d}/cert.pem\nTLSCertificateKeyFile {d}/key.pem\n\
             database mdb\nmaxsize 10485760\nsuffix \"{SUFFIX}\"\nrootdn \"cn=admin,{SUFFIX}\"\nrootpw {ROOT_PW}\n\
             directory {d}/db\n",
            d = d.display()
        );
        std::fs::write(d.join("slapd.conf"), conf).unwrap();
        let ldif = format!(
            "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
             dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n\
             dn: uid=dave,ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: dave\ncn: Dave\nsn: D\nuserPassword: dave-ldap-password\n\n\
             dn: uid=erin,ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: erin\ncn: Erin\nsn: E\nuserPassword: erin-ldap-password\n\n\
             dn: uid=gina,ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: gina\ncn: Gina\nsn: G\nuserPassword: gina-ldap-password\n\n\
             dn: uid=owner,ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: owner\ncn: Another Owner\nsn: O\nuserPassword: owner-ldap-password\n\n\
             dn: cn=acme:dev,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: acme:dev\nmember: uid=dave,ou=people,{SUFFIX}\nmember: uid=gina,ou=people,{SUFFIX}\n\n\
             dn: cn=acme:owners,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: acme:owners\nmember: uid=erin,ou=people,{SUFFIX}\n\n\
             dn: cn=victim:owners,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: victim:owners\nmember: uid=dave,ou=people,{SUFFIX}\n"
        );
        std::fs::write(d.join("data.ldif"), ldif).unwrap();
        let (ok, out) = run(Command::new("/usr/sbin/slapadd")
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-l")
            .arg(d.join("data.ldif")));
        assert!(ok, "slapadd: {out}");
        let port = free_port();
        let child = Command::new("/usr/sbin/slapd")
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .args(["-h", &format!("ldap://127.0.0.1:{port}/"), "-d", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("slapd");
        wait_for_port(port, "slapd", 20).await;
        Slapd { child, port, dir }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gateway signing in through the directory on `ldap_port`, trusting `ca` (else the system's
/// CAs, which do not know the test CA).
async fn gateway(ldap_port: u16, ca: Option<&Path>) -> Server {
    let url = format!("ldap://127.0.0.1:{ldap_port}");
    let bind_dn = format!("cn=admin,{SUFFIX}");
    let users = format!("ou=people,{SUFFIX}");
    let groups = format!("ou=groups,{SUFFIX}");
    let ca = ca.map(|c| c.display().to_string());
    let mut env = vec![
        ("PORTCULLIS_ADMIN_PASSWORD", ADMIN_PW),
        ("PORTCULLIS_AUTH__LDAP__URL", url.as_str()),
        ("PORTCULLIS_AUTH__LDAP__BIND_DN", bind_dn.as_str()),
        ("PORTCULLIS_AUTH__LDAP__BIND_PASSWORD", ROOT_PW),
        ("PORTCULLIS_AUTH__LDAP__USER_BASE", users.as_str()),
        ("PORTCULLIS_AUTH__LDAP__GROUP_BASE", groups.as_str()),
        ("PORTCULLIS_AUTH__LDAP__TIMEOUT_SECS", "3"),
    ];
    if let Some(ca) = &ca {
        env.push(("PORTCULLIS_AUTH__LDAP__CA_FILE", ca.as_str()));
    }
    Server::launch(tempfile::tempdir().unwrap(), &env, None, "http").await
}

async fn token_status(s: &Server, user: &str, password: &str) -> (u16, String) {
    let r = s.http.get(s.url("/token?service=portcullis")).basic_auth(user, Some(password)).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn ldap_passwords_sign_in_with_starttls_and_groups_become_teams() {
    let slapd = Slapd::start().await;
    let s = gateway(slapd.port, Some(&slapd.dir.path().join("ca.pem"))).await;
    // org acme: team dev may pull the private acme/app
    s.create_user("owner").await;
    s.create_org("acme", "owner").await;
    let op = pw("owner");
    let owner = ("owner", op.as_str());
    assert_eq!(s.api("POST", "/api/v1/orgs/acme/teams", owner, Some(json!({"name": "dev"}))).await.0, 201);
    let (st, _) =
        s.api("PUT", "/api/v1/orgs/acme/teams/dev/permissions/app", owner, Some(json!({"permission": "read"}))).await;
    assert!(st == 200 || st == 204);
    let t = s.token(Some(owner), &["repository:acme/app:pull,push"]).await;
    push_image(&s, &t, "acme/app", "1", b"the team's private layer").await;
    // victim, whose owner never connected the directory; acme delegates its teams (not owners)
    s.create_user("vic").await;
    s.create_org("victim", "vic").await;
    let work = tempfile::tempdir().unwrap();
    let delegate = json!({"directory": {"providers": ["ldap"]}});
    let (st, b) = s.api("PUT", "/api/v1/orgs/acme/settings", owner, Some(delegate)).await;
    assert!(st == 200 && b["directory"]["providers"] == json!(["ldap"]), "{st} {b}");

    // dave's directory password, over StartTLS: his group made him a member of dev
    let (ok, out) = skopeo_pull(&s.addr(), "dave:dave-ldap-password", "acme/app:1", &work.path().join("d"));
    assert!(ok, "dave pulls through his group's team: {out}");
    let (_, users) = s.admin("GET", "/api/v1/users", None).await;
    let dave = users.as_array().unwrap().iter().find(|u| u["username"] == "dave").unwrap().clone();
    assert_eq!(dave["source"], "ldap", "{dave}");
    let (_, members) = s.api("GET", "/api/v1/orgs/acme/teams/dev/members", owner, None).await;
    assert!(members.to_string().contains("\"dave\""), "{members}");
    // his group victim:owners changed nothing: victim did not delegate (and that is audited)
    let vp = pw("vic");
    let (_, vm) = s.api("GET", "/api/v1/orgs/victim/members", ("vic", &vp), None).await;
    assert!(!vm.to_string().contains("dave"), "{vm}");
    let mut audit = serde_json::Value::Null;
    for _ in 0..50 {
        audit = s.api("GET", "/api/v1/orgs/victim/audit?limit=20", ("vic", &vp), None).await.1;
        if audit.to_string().contains("directory.ignored") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(audit.to_string().contains("directory.ignored"), "{audit}");
    // docker login with the directory's password
    let sock = std::env::var("DOCKER_SOCK").unwrap_or_else(|_| "/tmp/pcl-test/docker/docker.sock".into());
    let cfg = work.path().join("docker-config");
    std::fs::create_dir_all(&cfg).unwrap();
    let mut login = Command::new("docker");
    login.env("DOCKER_CONFIG", &cfg).args([
        "-H",
        &format!("unix://{sock}"),
        "login",
        "-u",
        "dave",
        "-p",
        "dave-ldap-password",
        &s.addr(),
    ]);
    let (ok, out) = run(&mut login);
    assert!(ok && out.contains("Login Succeeded"), "{out}");
    // erin is only in acme:owners, which acme did not delegate: signed in, no member, no owner
    let (ok, _) = skopeo_pull(&s.addr(), "erin:erin-ldap-password", "acme/app:1", &work.path().join("e"));
    assert!(!ok, "erin is no member of dev");
    assert_eq!(token_status(&s, "erin", "erin-ldap-password").await.0, 200);
    let (_, am) = s.api("GET", "/api/v1/orgs/acme/members", owner, None).await;
    assert!(!am.to_string().contains("erin"), "{am}");

    // a name that differs from a local account only in case is that account (never the
    // directory's user of that name, never a 503); the directory's own "owner" gets a 401
    assert_eq!(token_status(&s, "Owner", &op).await.0, 200);
    let (status, body) = token_status(&s, "OWNER", "owner-ldap-password").await;
    assert_eq!(status, 401, "{body}");

    // a person the directory provisioned through SCIM signs in through LDAP to that account
    let (st, tok) = s.api("POST", "/api/v1/scim-tokens", owner, Some(json!({"name": "idp", "org": "acme"}))).await;
    assert_eq!(st, 201, "{tok}");
    let scim = tok["token"].as_str().unwrap().to_owned();
    let user = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "gina"});
    let r = s.http.post(s.url("/scim/v2/Users")).bearer_auth(&scim).json(&user).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let (ok, out) = skopeo_pull(&s.addr(), "gina:gina-ldap-password", "acme/app:1", &work.path().join("g"));
    assert!(ok, "gina pulls through her LDAP group: {out}");
    let (_, users) = s.admin("GET", "/api/v1/users", None).await;
    let gina = users.as_array().unwrap().iter().find(|u| u["username"] == "gina").unwrap().clone();
    assert_eq!(gina["source"], "scim", "the SCIM account, not a second one: {gina}");

    // wrong passwords, an empty one and filter injection are refused like any bad password
    for (user, password) in
        [("dave", "wrong"), ("dave", ""), ("*)(uid=*", "dave-ldap-password"), ("*", "x"), ("dave)(|(uid=*", "x")]
    {
        let (status, body) = token_status(&s, user, password).await;
        assert_eq!(status, 401, "{user:?}/{password:?}: {body}");
    }
    let (_, audit) = s.admin("GET", "/api/v1/audit?limit=100", None).await;
    assert!(audit.to_string().contains("\"method\\\":\\\"ldap\\\""), "{audit}");

    // StartTLS verifies the server: without the test CA the directory cannot be reached
    let untrusting = gateway(slapd.port, None).await;
    let (status, body) = token_status(&untrusting, "dave", "dave-ldap-password").await;
    assert_eq!(status, 503, "{body}");
    drop(untrusting);

    // the directory goes down: 503 for its users (a minute's verified cache aside), the
    // administrator still signs in
    drop(slapd);
    let (status, body) = token_status(&s, "erin", "not-cached-password").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("cannot be reached"), "{body}");
    assert_eq!(token_status(&s, "admin", ADMIN_PW).await.0, 200);
}
