//! The shared storage suites: every `MetaStore` must pass `meta_suite`, every `BlobStore`
//! must pass `blob_suite`. They start from an empty store.

use bytes::Bytes;
use futures_util::StreamExt;
use portcullis_core::error::Error;
use portcullis_core::model::*;
use portcullis_core::ports::{BlobStore, MetaStore};
use std::io::Write;

/// A fresh database in the test PostgreSQL cluster (`PCL_TEST_POSTGRES_URL`, which
/// `scripts/daemons.sh start` provides), dropped at the end of the test. Without the cluster
/// the test fails: it is never skipped.
pub struct TestDatabase {
    /// The database's URL, over TLS verified against the test CA (`PCL_TEST_POSTGRES_CA`).
    pub url: String,
    admin: String,
    name: String,
}

impl TestDatabase {
    pub async fn create() -> TestDatabase {
        let admin = std::env::var("PCL_TEST_POSTGRES_URL").expect(
            "PCL_TEST_POSTGRES_URL is not set: run scripts/test.sh, or scripts/daemons.sh start and export $(scripts/daemons.sh env)",
        );
        let name = format!("pcl_{}", uuid::Uuid::new_v4().simple());
        let mut c =
            <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await.expect("the test PostgreSQL cluster");
        // The name is ours (a UUID), not input.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut c).await.unwrap();
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        let ca =
            std::env::var("PCL_TEST_POSTGRES_CA").expect("PCL_TEST_POSTGRES_CA is not set: see scripts/daemons.sh");
        TestDatabase { url: format!("{base}/{name}?sslmode=verify-full&sslrootcert={ca}"), admin, name }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Best effort, on a thread of its own: Drop cannot await.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok(mut c) = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await {
                    let drop = sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
                    let _ = sqlx::query(drop).execute(&mut c).await;
                }
            });
        })
        .join();
    }
}

/// A fresh bucket on the test S3 server (`PCL_TEST_S3_ENDPOINT`, moto, which
/// `scripts/daemons.sh start` provides). Without the server the test fails: it is never skipped.
pub fn test_bucket() -> crate::S3Config {
    let endpoint = std::env::var("PCL_TEST_S3_ENDPOINT").expect(
        "PCL_TEST_S3_ENDPOINT is not set: run scripts/test.sh, or scripts/daemons.sh start and export $(scripts/daemons.sh env)",
    );
    let bucket = format!("pcl-{}", uuid::Uuid::new_v4().simple());
    // moto takes an unsigned CreateBucket.
    let host = endpoint.trim_start_matches("http://");
    let mut c = std::net::TcpStream::connect(host).expect("the test S3 server");
    write!(c, "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut c, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "bucket not created: {answer}");
    crate::S3Config {
        endpoint,
        bucket,
        region: "us-east-1".into(),
        access_key_id: "test".into(),
        secret_access_key: "test".into(),
        path_style: true,
        redirect_ttl: None,
    }
}

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn dg(s: &str) -> oci::Digest {
    s.parse().unwrap()
}

fn tg(s: &str) -> oci::name::Tag {
    s.parse().unwrap()
}

fn row(digest: &str, subject: Option<&str>) -> ManifestRow {
    ManifestRow {
        digest: digest.into(),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        content: format!("{{\"m\":\"{digest}\"}}").into_bytes(),
        artifact_type: Some("application/x-test".into()),
        subject: subject.map(str::to_owned),
        annotations: None,
    }
}

pub async fn meta_suite(s: &dyn MetaStore) {
    // users and the shared namespace of users and orgs
    let alice = s.create_user("alice", "h1", false, 10).await.unwrap();
    let bob = s.create_user("bob", "h2", false, 10).await.unwrap();
    assert!(matches!(s.create_user("alice", "h", false, 10).await, Err(Error::Conflict(_))));
    assert_eq!(s.user_by_name("alice").await.unwrap().unwrap().password_hash, "h1");
    s.set_password(alice.id, "h3").await.unwrap();
    assert_eq!(s.user_by_name("alice").await.unwrap().unwrap().password_hash, "h3");
    assert_eq!(s.count_users().await.unwrap(), 2);
    let names: Vec<String> = s.list_users().await.unwrap().into_iter().map(|u| u.username).collect();
    assert_eq!(names, ["alice", "bob"], "sorted by name");
    assert!(s.user_by_name("nobody").await.unwrap().is_none());

    // tokens
    let t = s.create_token(alice.id, "ci", TokenKind::Pat, "hash-1", TokenScope::Read, Some(99), 10).await.unwrap();
    let TokenHolder { token: found, user: owner } = s.token_by_hash("hash-1").await.unwrap().unwrap();
    assert_eq!((found.id, found.scope, owner.id), (t.id, TokenScope::Read, alice.id));
    s.touch_token(t.id, 50).await.unwrap();
    assert_eq!(s.list_tokens(alice.id).await.unwrap()[0].last_used_at, Some(50));
    assert!(!s.delete_token(bob.id, t.id).await.unwrap(), "only the owner deletes");
    assert!(s.delete_token(alice.id, t.id).await.unwrap());
    assert!(s.token_by_hash("hash-1").await.unwrap().is_none());

    // orgs, teams, members
    let acme = s.create_org("acme", alice.id, 10).await.unwrap();
    assert!(matches!(s.create_org("bob", alice.id, 10).await, Err(Error::Conflict(_))), "names are shared");
    assert!(matches!(s.create_user("acme", "h", false, 10).await, Err(Error::Conflict(_))));
    assert_eq!(s.org_by_name("acme").await.unwrap(), Some(acme.clone()));
    assert!(s.org_by_name("acm").await.unwrap().is_none(), "exact names only");
    assert_eq!(s.list_orgs().await.unwrap(), vec![acme.clone()]);
    let owners = s.team(acme.id, OWNERS_TEAM).await.unwrap().unwrap();
    assert_eq!(s.team_members(owners.id).await.unwrap()[0].username, "alice");
    let dev = s.create_team(acme.id, "dev").await.unwrap();
    assert!(matches!(s.create_team(acme.id, "dev").await, Err(Error::Conflict(_))));
    assert!(s.add_member(dev.id, bob.id).await.unwrap());
    assert!(!s.add_member(dev.id, bob.id).await.unwrap());
    assert!(matches!(s.remove_member(owners.id, alice.id).await, Err(Error::Conflict(_))), "last owner stays");
    s.add_member(owners.id, bob.id).await.unwrap();
    assert!(s.remove_member(owners.id, alice.id).await.unwrap());
    assert!(!s.remove_member(owners.id, alice.id).await.unwrap());
    s.set_permission(dev.id, "app", Some(Permission::Write)).await.unwrap();
    s.set_permission(dev.id, "app", Some(Permission::Admin)).await.unwrap();
    s.set_permission(dev.id, "other", Some(Permission::Read)).await.unwrap();
    s.set_permission(dev.id, "other", None).await.unwrap();
    assert_eq!(
        s.team_permissions(dev.id).await.unwrap(),
        vec![RepoPermission { repo: "app".into(), permission: Permission::Admin }]
    );
    assert_eq!(s.list_teams(acme.id).await.unwrap().len(), 2);
    // deleting a team takes its members and permissions with it
    let tmp = s.create_team(acme.id, "tmp").await.unwrap();
    s.add_member(tmp.id, bob.id).await.unwrap();
    s.set_permission(tmp.id, "app", Some(Permission::Read)).await.unwrap();
    s.delete_team(tmp.id).await.unwrap();
    assert!(s.team(acme.id, "tmp").await.unwrap().is_none());
    let dir = s.load_directory().await.unwrap();
    assert!(!dir.members.iter().any(|(t, _)| *t == tmp.id) && !dir.permissions.iter().any(|(t, _, _)| *t == tmp.id));
    assert_eq!(s.list_teams(acme.id).await.unwrap().len(), 2);

    // accounts of an identity provider and the memberships the directory granted
    let carol = s.create_external_user("carol", AccountSource::Oidc, "https://idp|c1", 10).await.unwrap();
    assert_eq!((carol.source, carol.password_hash.as_str()), (AccountSource::Oidc, "!"));
    assert_eq!(s.user_by_name("alice").await.unwrap().unwrap().source, AccountSource::Local);
    assert_eq!(s.external_user(AccountSource::Oidc, "https://idp|c1").await.unwrap().map(|u| u.id), Some(carol.id));
    assert!(s.external_user(AccountSource::Ldap, "https://idp|c1").await.unwrap().is_none(), "per source");
    assert!(matches!(
        s.create_external_user("carol2", AccountSource::Oidc, "https://idp|c1", 10).await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        s.create_external_user("alice", AccountSource::Oidc, "https://idp|a", 10).await,
        Err(Error::Conflict(_))
    ));
    assert!(s.add_directory_member(dev.id, carol.id).await.unwrap());
    assert!(!s.add_directory_member(dev.id, bob.id).await.unwrap(), "bob's hand-made membership stays hand-made");
    assert_eq!(s.directory_memberships(carol.id).await.unwrap(), vec![dev.id]);
    assert!(s.directory_memberships(bob.id).await.unwrap().is_empty());
    assert!(s.remove_member(dev.id, carol.id).await.unwrap());
    assert!(s.directory_memberships(carol.id).await.unwrap().is_empty());
    s.delete_user(carol.id).await.unwrap();

    // SCIM: tokens by hash (marked used), per org or all; provisioned users and groups with their
    // attributes, gone with the user or team; deprovisioning deletes every access token
    let org_tok = s.create_scim_token(Some(acme.id), "okta", "h1", "alice", 10).await.unwrap();
    let inst_tok = s.create_scim_token(None, "entra", "h2", "admin", 11).await.unwrap();
    assert!(matches!(s.create_scim_token(None, "again", "h1", "admin", 11).await, Err(Error::Conflict(_))));
    assert_eq!(s.use_scim_token("h1", 20).await.unwrap().map(|t| (t.id, t.last_used_at)), Some((org_tok.id, Some(20))));
    assert!(s.use_scim_token("nope", 20).await.unwrap().is_none());
    let ids = |v: Vec<ScimToken>| v.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(ids(s.list_scim_tokens(Some(acme.id)).await.unwrap()), [org_tok.id]);
    assert_eq!(ids(s.list_scim_tokens(None).await.unwrap()), [org_tok.id, inst_tok.id]);
    assert!(s.delete_scim_token(inst_tok.id).await.unwrap() && !s.delete_scim_token(inst_tok.id).await.unwrap());
    let dave = s.create_scim_user("dave", Some(acme.id), r#"{"displayName":"Dave"}"#, true, 12).await.unwrap();
    assert_eq!((dave.source, dave.password_hash.as_str(), dave.disabled), (AccountSource::Scim, "!", true));
    assert!(matches!(s.create_scim_user("acme", None, "{}", false, 12).await, Err(Error::Conflict(_))));
    let dave_row = ScimUserRow { user_id: dave.id, org_id: Some(acme.id), attrs: r#"{"displayName":"Dave"}"#.into() };
    assert_eq!(s.scim_users().await.unwrap(), [dave_row]);
    s.put_scim_user(dave.id, None, r#"{"displayName":"D"}"#, 13).await.unwrap();
    s.put_scim_user(bob.id, Some(acme.id), "{}", 13).await.unwrap();
    let rows = s.scim_users().await.unwrap();
    assert_eq!(
        rows.iter().map(|r| (r.user_id, r.org_id)).collect::<Vec<_>>(),
        [(bob.id, Some(acme.id)), (dave.id, None)]
    );
    s.create_token(dave.id, "ci", TokenKind::Pat, "dave-tok", TokenScope::Read, None, 10).await.unwrap();
    s.create_token(dave.id, "ci2", TokenKind::Pat, "dave-tok2", TokenScope::Read, None, 10).await.unwrap();
    assert_eq!(s.delete_user_tokens(dave.id).await.unwrap(), 2);
    assert!(s.token_by_hash("dave-tok").await.unwrap().is_none() && s.list_tokens(dave.id).await.unwrap().is_empty());
    let grp = s.create_team(acme.id, "scimmed").await.unwrap();
    s.put_scim_group(grp.id, r#"{"externalId":"g1"}"#, 14).await.unwrap();
    s.put_scim_group(grp.id, r#"{"externalId":"g2"}"#, 15).await.unwrap();
    assert_eq!(
        s.scim_groups().await.unwrap(),
        [ScimGroupRow { team_id: grp.id, attrs: r#"{"externalId":"g2"}"#.into() }]
    );
    s.delete_team(grp.id).await.unwrap();
    s.delete_user(dave.id).await.unwrap();
    assert!(s.scim_groups().await.unwrap().is_empty());
    assert_eq!(s.scim_users().await.unwrap().iter().map(|r| r.user_id).collect::<Vec<_>>(), [bob.id]);

    // team rules (gone with their team) and the policy history, numbered per org
    let platform = s.create_team(acme.id, "platform").await.unwrap();
    s.put_team_settings(platform.id, Some(r#"{"x":1}"#), 10).await.unwrap();
    s.put_team_settings(platform.id, Some(r#"{"x":2}"#), 11).await.unwrap();
    let rule = TeamSettingsRow { org: "acme".into(), team: "platform".into(), settings: r#"{"x":2}"#.into() };
    assert_eq!(s.all_team_settings().await.unwrap(), [rule]);
    s.put_team_settings(platform.id, None, 12).await.unwrap();
    assert!(s.all_team_settings().await.unwrap().is_empty());
    s.put_team_settings(platform.id, Some("{}"), 12).await.unwrap();
    s.delete_team(platform.id).await.unwrap();
    assert!(s.all_team_settings().await.unwrap().is_empty());
    assert_eq!(s.append_policy_version(acme.id, "alice", "settings", "{\"v\":1}", 20).await.unwrap(), 1);
    assert_eq!(s.append_policy_version(acme.id, "bob", "exception", "{\"v\":2}", 21).await.unwrap(), 2);
    let versions = s.policy_versions(acme.id).await.unwrap();
    let seen: Vec<(i64, &str, &str)> =
        versions.iter().map(|v| (v.version, v.author.as_str(), v.state.as_str())).collect();
    assert_eq!(seen, [(2, "bob", "{\"v\":2}"), (1, "alice", "{\"v\":1}")], "newest first");

    // Docker Hub badges looked up, kept with their expiry (none: community)
    s.put_hub_badge("acmesoft", Some("verified_publisher"), 100).await.unwrap();
    s.put_hub_badge("someone", None, 50).await.unwrap();
    s.put_hub_badge("acmesoft", Some("open_source"), 200).await.unwrap();
    let badges = s.hub_badges().await.unwrap();
    let badges: Vec<_> = badges.into_iter().map(|r| (r.namespace, r.badge, r.expires_at)).collect();
    assert_eq!(badges, [("acmesoft".into(), Some("open_source".into()), 200), ("someone".into(), None, 50)]);

    // repositories
    let r = s.ensure_repo("acme/app", Visibility::Private, 10).await.unwrap();
    assert_eq!(s.ensure_repo("acme/app", Visibility::Public, 11).await.unwrap(), r, "ensure is idempotent");
    assert!(s.set_visibility("acme/app", Visibility::Public).await.unwrap());
    assert_eq!(s.repo("acme/app").await.unwrap().unwrap().visibility, Visibility::Public);
    s.ensure_repo("acme/aaa", Visibility::Private, 12).await.unwrap();
    let repos: Vec<String> = s.list_repos().await.unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(repos, ["acme/aaa", "acme/app"], "sorted by name");
    assert!(s.delete_repo("acme/aaa").await.unwrap());
    let dir = s.load_directory().await.unwrap();
    assert_eq!((dir.users.len(), dir.orgs.len(), dir.teams.len(), dir.repos.len()), (2, 1, 2, 1));
    assert!(dir.permissions.contains(&(dev.id, "app".into(), Permission::Admin)));

    // blobs and links
    let (d1, d2) = (&dg(D1), &dg(D2));
    s.put_blob(d1, 3, 10).await.unwrap();
    s.put_blob(d1, 3, 10).await.unwrap();
    assert_eq!(s.blob_size(d1).await.unwrap(), Some(3));
    assert_eq!(s.linked_blob(r.id, d1).await.unwrap(), None, "a blob is reachable only through a link");
    s.link_blob(r.id, d1).await.unwrap();
    assert_eq!(s.linked_blob(r.id, d1).await.unwrap(), Some(3));

    // manifests, tags, referrers
    s.put_manifest(r.id, &row(D2, None), std::slice::from_ref(d1), Some(&tg("v1")), 10).await.unwrap();
    s.put_manifest(r.id, &row(D2, None), std::slice::from_ref(d1), Some(&tg("latest")), 10).await.unwrap();
    let referrer = "sha256:3333333333333333333333333333333333333333333333333333333333333333";
    s.put_manifest(r.id, &row(referrer, Some(D2)), &[], None, 10).await.unwrap();
    assert_eq!(s.manifest(r.id, d2).await.unwrap().unwrap(), row(D2, None));
    assert_eq!(s.manifest_by_tag(r.id, &tg("v1")).await.unwrap().unwrap().digest, D2);
    assert_eq!(s.tag_digest(r.id, &tg("latest")).await.unwrap().as_ref(), Some(d2));
    assert_eq!(s.list_tags(r.id, None, None).await.unwrap(), vec!["latest", "v1"]);
    assert_eq!(s.list_tags(r.id, Some("latest"), Some(5)).await.unwrap(), vec!["v1"]);
    assert_eq!(s.list_tags(r.id, None, Some(1)).await.unwrap(), vec!["latest"]);
    assert_eq!(s.manifests_present(r.id, &[d2.clone(), d1.clone()]).await.unwrap(), vec![d2.clone()]);
    let refs = s.referrers(r.id, d2).await.unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].digest, referrer);
    // pull-through cache bookkeeping
    assert!(s.blob_referenced(r.id, d1).await.unwrap(), "the manifest references D1");
    assert!(!s.blob_referenced(r.id, d2).await.unwrap());
    let TagEntry { digest, checked_at } = s.tag_entry(r.id, &tg("latest")).await.unwrap().unwrap();
    assert_eq!((&digest, checked_at), (d2, 10));
    s.touch_tag(r.id, &tg("latest"), 99).await.unwrap();
    assert_eq!(s.tag_entry(r.id, &tg("latest")).await.unwrap().unwrap().checked_at, 99);
    let c1 = "sha256:4444444444444444444444444444444444444444444444444444444444444444";
    let c2 = "sha256:5555555555555555555555555555555555555555555555555555555555555555";
    s.put_cached_blob(&dg(c1), 100, 20).await.unwrap();
    s.put_cached_blob(&dg(c2), 50, 10).await.unwrap();
    assert_eq!(s.cached_bytes().await.unwrap(), 150);
    let lru: Vec<(String, u64)> =
        s.cached_lru(10).await.unwrap().into_iter().map(|b| (b.digest.to_string(), b.size)).collect();
    assert_eq!(lru, vec![(c2.to_string(), 50), (c1.to_string(), 100)]);
    s.touch_blob(&dg(c2), 500).await.unwrap();
    assert_eq!(s.cached_lru(1).await.unwrap()[0].digest, dg(c1), "touched blobs move to the back");
    s.put_blob(&dg(c1), 100, 30).await.unwrap();
    assert_eq!(s.cached_bytes().await.unwrap(), 50, "a pushed blob is no longer evictable");
    assert!(s.unreferenced_blobs().await.unwrap().contains(&dg(c2)));
    assert!(!s.unreferenced_blobs().await.unwrap().contains(d1));
    s.forget_blob(&dg(c1)).await.unwrap();
    s.forget_blob(&dg(c2)).await.unwrap();

    assert!(s.delete_tag(r.id, &tg("v1")).await.unwrap());
    assert!(!s.delete_tag(r.id, &tg("v1")).await.unwrap());
    assert!(s.delete_manifest(r.id, d2).await.unwrap());
    assert!(s.manifest_by_tag(r.id, &tg("latest")).await.unwrap().is_none(), "tags go with their manifest");
    assert!(s.unlink_blob(r.id, d1).await.unwrap());
    assert_eq!(s.list_blobs().await.unwrap(), vec![BlobRow { digest: d1.clone(), size: 3 }]);
    s.forget_blob(d1).await.unwrap();
    assert!(s.blob_size(d1).await.unwrap().is_none());

    // uploads
    s.create_upload("u-1", "acme/app", 10).await.unwrap();
    assert_eq!(s.upload("u-1").await.unwrap().unwrap().hash_state, None);
    assert_eq!(s.uploads_started_before(11).await.unwrap(), vec!["u-1".to_owned()]);
    assert!(s.uploads_started_before(10).await.unwrap().is_empty());
    s.set_upload_progress("u-1", 42, &[1, 2, 3]).await.unwrap();
    let u = s.upload("u-1").await.unwrap().unwrap();
    assert_eq!((u.repo.as_str(), u.size, u.hash_state), ("acme/app", 42, Some(vec![1, 2, 3])));
    s.delete_upload("u-1").await.unwrap();
    assert!(s.upload("u-1").await.unwrap().is_none());

    // Image Access Management settings and exceptions
    s.put_org_settings(acme.id, r#"{"a":1}"#, 10).await.unwrap();
    s.put_org_settings(acme.id, r#"{"a":2}"#, 11).await.unwrap();
    let settings = OrgSettingsRow { org: "acme".into(), settings: r#"{"a":2}"#.into() };
    assert_eq!(s.all_org_settings().await.unwrap(), vec![settings]);
    let e = policy::Exception {
        id: 0,
        pattern: "docker.io/x/*".into(),
        digest: None,
        team: Some("dev".into()),
        expires_at: Some(99),
        reason: "why".into(),
        created_by: "alice".into(),
        created_at: 5,
    };
    let id = s.create_exception(acme.id, &e).await.unwrap();
    let all = s.all_exceptions().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].org, "acme");
    assert_eq!(all[0].exception, policy::Exception { id, ..e.clone() });
    assert!(!s.delete_exception(acme.id + 1, id).await.unwrap(), "only through its org");
    assert!(s.delete_exception(acme.id, id).await.unwrap());
    let again = s.create_exception(acme.id, &e).await.unwrap();
    assert!(again > id, "an id is never given again after a delete: {again} after {id}");
    assert!(s.delete_exception(acme.id, again).await.unwrap());

    // publisher overrides
    assert!(s.set_publisher_override("someone", Some("verified_publisher"), "admin", 1).await.unwrap());
    assert!(s.set_publisher_override("someone", Some("none"), "admin", 2).await.unwrap());
    let none = PublisherOverrideRow { namespace: "someone".into(), badge: "none".into() };
    assert_eq!(s.publisher_overrides().await.unwrap(), vec![none]);
    assert!(s.set_publisher_override("someone", None, "admin", 3).await.unwrap());
    assert!(!s.set_publisher_override("someone", None, "admin", 3).await.unwrap());

    // workload issuers added at run time: unique by name and by iss, each change moves the
    // generation (replicas reload them)
    let g0 = s.generation().await.unwrap();
    s.create_workload_issuer("k8s", "https://k8s.example", "{\"name\":\"k8s\"}", "admin", 1).await.unwrap();
    s.create_workload_issuer("gha", "https://gha.example", "{\"name\":\"gha\"}", "admin", 2).await.unwrap();
    assert!(s.generation().await.unwrap() > g0);
    for (name, iss) in [("k8s", "https://other.example"), ("other", "https://k8s.example")] {
        let e = s.create_workload_issuer(name, iss, "{}", "admin", 3).await.unwrap_err();
        assert!(matches!(e, Error::Conflict(_)), "{name} {iss}: {e}");
    }
    assert_eq!(s.workload_issuers().await.unwrap(), vec!["{\"name\":\"k8s\"}", "{\"name\":\"gha\"}"]);
    let g1 = s.generation().await.unwrap();
    assert!(s.delete_workload_issuer("k8s").await.unwrap());
    assert!(!s.delete_workload_issuer("k8s").await.unwrap());
    assert!(s.generation().await.unwrap() > g1);
    assert!(s.delete_workload_issuer("gha").await.unwrap());

    // audit
    let pull = |at: i64, org: &str, decision: &str| AuditEntry {
        at,
        org: Some(org.into()),
        actor: "bob".into(),
        action: "pull".into(),
        image: Some("docker.io/someone/app".into()),
        decision: Some(AuditDecision::try_from(decision.to_owned()).unwrap()),
        ..Default::default()
    };
    s.append_audit(&[pull(100, "acme", "allowed"), pull(200, "acme", "denied"), pull(300, "other", "denied")])
        .await
        .unwrap();
    let all = s.query_audit(Some("acme"), &AuditQuery::default()).await.unwrap();
    assert_eq!(all.iter().map(|e| e.at).collect::<Vec<_>>(), vec![200, 100], "newest first, one org");
    let denied = s
        .query_audit(Some("acme"), &AuditQuery { decision: Some("denied".into()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(denied.len(), 1);
    let page = s
        .query_audit(None, &AuditQuery { limit: Some(1), before: Some(all[0].id), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(page[0].at, 100, "cursor paging");
    let mut categorized = pull(86_400 + 5, "acme", "denied");
    categorized.category = "community".parse().ok();
    categorized.rule = Some(policy::Rule::Category);
    s.append_audit(&[categorized.clone(), categorized]).await.unwrap();
    let by_category = AuditQuery { category: Some("community".into()), ..Default::default() };
    let found = s.query_audit(Some("acme"), &by_category).await.unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!((found[0].category.map(|c| c.key), found[0].rule), (Some("community"), Some(policy::Rule::Category)));
    let activity = s.audit_activity("acme", 150).await.unwrap();
    assert_eq!(
        activity,
        vec![
            ActivityRow { day: 0, category: "unknown".into(), decision: "denied".into(), pulls: 1 },
            ActivityRow { day: 1, category: "community".into(), decision: "denied".into(), pulls: 2 },
        ],
        "by day, category and decision, one org, since"
    );
    assert_eq!(s.prune_audit(150).await.unwrap(), 1);

    // console sessions: found by hash until they expire, with their user
    s.create_session("sess-1", alice.id, "csrf-1", 10, 100).await.unwrap();
    let found = s.session("sess-1", 50).await.unwrap().unwrap();
    assert_eq!((found.user.username.as_str(), found.csrf.as_str(), found.expires_at), ("alice", "csrf-1", 100));
    assert!(s.session("sess-1", 100).await.unwrap().is_none(), "expired");
    assert!(s.session("sess-2", 50).await.unwrap().is_none());
    s.create_session("sess-2", bob.id, "csrf-2", 10, 1000).await.unwrap();
    assert_eq!(s.prune_sessions(100).await.unwrap(), 1);
    s.delete_session("sess-2").await.unwrap();
    assert!(s.session("sess-2", 50).await.unwrap().is_none());
    s.create_session("sess-3", bob.id, "csrf-3", 10, 1000).await.unwrap();
    s.create_session("sess-4", alice.id, "csrf-4", 10, 1000).await.unwrap();
    s.delete_user_sessions(bob.id).await.unwrap();
    assert!(s.session("sess-3", 50).await.unwrap().is_none());
    assert!(s.session("sess-4", 50).await.unwrap().is_some(), "only that user's");

    // exception requests: decided once
    let req = ExceptionRequest {
        requester: "bob".into(),
        image: "docker.io/someone/app".into(),
        digest: Some(D1.into()),
        reason: "needed for CI".into(),
        created_at: 7,
        denial: Some("community image docker.io/someone/app is not allowed".into()),
        ..Default::default()
    };
    let id = s.create_exception_request(acme.id, &req).await.unwrap();
    let listed = s.exception_requests(acme.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].id, listed[0].org.as_str(), listed[0].status.as_str(), listed[0].digest.as_deref()),
        (id, "acme", REQUEST_PENDING, Some(D1))
    );
    assert_eq!(listed[0].denial, req.denial, "the denial the requester saw");
    let approved = ExceptionRequest {
        status: REQUEST_APPROVED.into(),
        decided_by: Some("alice".into()),
        decided_at: Some(9),
        exception_id: Some(42),
        ..req.clone()
    };
    assert!(s.decide_exception_request(acme.id, id, &approved).await.unwrap());
    assert!(!s.decide_exception_request(acme.id, id, &approved).await.unwrap(), "only pending ones");
    let after = &s.exception_requests(acme.id).await.unwrap()[0];
    assert_eq!((after.status.as_str(), after.exception_id, after.decided_at), (REQUEST_APPROVED, Some(42), Some(9)));

    // sign-in failures: counted per key in windows, with the last one's time
    let keys = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let f =
        |key: &str, window_start, failures, last_at| LoginFailures { key: key.into(), window_start, failures, last_at };
    s.record_login_failure("u:bob", 1000, 300).await.unwrap();
    s.record_login_failure("u:bob", 1100, 300).await.unwrap();
    s.record_login_failure("p:bob\t1.2.3.4", 1100, 300).await.unwrap();
    s.record_login_failure("p:bob\t1.2.3.45", 1100, 300).await.unwrap();
    assert_eq!(
        s.login_failures(&keys(&["u:bob", "p:bob\t1.2.3.4", "nope"])).await.unwrap(),
        vec![f("u:bob", 1000, 2, 1100), f("p:bob\t1.2.3.4", 1100, 1, 1100)]
    );
    s.record_login_failure("u:bob", 1300, 300).await.unwrap();
    assert_eq!(s.login_failures(&keys(&["u:bob"])).await.unwrap(), vec![f("u:bob", 1300, 1, 1300)], "new window");
    assert_eq!(s.clear_login_failures("p:bob\t1.2.3.4", false).await.unwrap(), 1, "exactly that key");
    assert_eq!(s.login_failures(&keys(&["p:bob\t1.2.3.45"])).await.unwrap().len(), 1);
    assert_eq!(s.clear_login_failures("p:bob\t", true).await.unwrap(), 1, "every key with the prefix");
    assert!(s.login_failures(&keys(&["p:bob\t1.2.3.45", "u:bob"])).await.unwrap().len() == 1);

    // users: disabled keeps the name; deleting takes tokens, sessions and memberships along
    let carl = s.create_user("carl", "h", false, 10).await.unwrap();
    assert!(!carl.disabled);
    assert!(s.set_user_disabled(carl.id, true).await.unwrap());
    assert!(s.user_by_name("carl").await.unwrap().unwrap().disabled);
    assert!(s.load_directory().await.unwrap().users.iter().any(|u| u.id == carl.id && u.disabled && u.local));
    s.create_token(carl.id, "t", TokenKind::Pat, "hash-carl", TokenScope::Read, None, 10).await.unwrap();
    s.create_session("sess-carl", carl.id, "c", 10, 1000).await.unwrap();
    s.add_member(dev.id, carl.id).await.unwrap();
    assert!(s.delete_user(carl.id).await.unwrap());
    assert!(!s.delete_user(carl.id).await.unwrap());
    assert!(s.user_by_name("carl").await.unwrap().is_none() && s.token_by_hash("hash-carl").await.unwrap().is_none());
    assert!(s.session("sess-carl", 50).await.unwrap().is_none());
    assert!(!s.team_members(dev.id).await.unwrap().iter().any(|u| u.username == "carl"));
    assert!(!s.set_user_disabled(carl.id, false).await.unwrap());

    // leases: one holder until expiry or release
    assert!(s.acquire_lease("fill:x", "a", 100, 30).await.unwrap());
    assert!(!s.acquire_lease("fill:x", "b", 110, 30).await.unwrap(), "held by a");
    assert!(s.acquire_lease("fill:x", "a", 120, 30).await.unwrap(), "a renews");
    assert!(!s.acquire_lease("fill:x", "b", 149, 30).await.unwrap());
    assert!(s.acquire_lease("fill:x", "b", 150, 30).await.unwrap(), "expired: b takes over");
    s.release_lease("fill:x", "a").await.unwrap();
    assert!(!s.acquire_lease("fill:x", "a", 151, 30).await.unwrap(), "a cannot release b's lease");
    s.release_lease("fill:x", "b").await.unwrap();
    assert!(s.acquire_lease("fill:x", "a", 152, 30).await.unwrap());
    s.release_lease("fill:x", "a").await.unwrap();
    // a restarted process drops what its node's dead process held, and nothing of other nodes
    // (nor of a node whose name merely starts the same)
    for (lease, holder) in [("fill:1", "n1/dead"), ("fill:2", "n1/dead"), ("fill:3", "n2/alive"), ("fill:4", "n10/x")] {
        assert!(s.acquire_lease(lease, holder, 200, 30).await.unwrap());
    }
    assert!(s.acquire_lease("fill:5", "n1/new", 200, 30).await.unwrap());
    assert_eq!(s.release_node_leases("n1", "n1/new").await.unwrap(), 2);
    assert!(s.acquire_lease("fill:1", "n1/new", 201, 30).await.unwrap(), "taken over at once");
    for (lease, other) in [("fill:3", "n1/new"), ("fill:4", "n1/new"), ("fill:5", "n2/alive")] {
        assert!(!s.acquire_lease(lease, other, 201, 30).await.unwrap(), "{lease} stays");
    }

    // replicas: keys newest first; every change to what replicas cache moves the generation
    let g0 = s.generation().await.unwrap();
    s.add_signing_key("k1", b"one", 10).await.unwrap();
    s.add_signing_key("k2", b"two", 20).await.unwrap();
    s.add_signing_key("k1", b"other", 30).await.unwrap();
    let keys: Vec<(String, Vec<u8>)> = s.signing_keys().await.unwrap().into_iter().map(|k| (k.kid, k.pkcs8)).collect();
    assert_eq!(keys, vec![("k2".to_string(), b"two".to_vec()), ("k1".to_string(), b"one".to_vec())]);
    let g1 = s.generation().await.unwrap();
    assert!(g1 > g0);
    s.put_org_settings(acme.id, "{}", 40).await.unwrap();
    let g2 = s.generation().await.unwrap();
    assert!(g2 > g1, "settings");
    s.append_audit(&[pull(500, "acme", "allowed")]).await.unwrap();
    assert_eq!(s.generation().await.unwrap(), g2, "audit entries are not cached state");

    assert!(s.delete_repo("acme/app").await.unwrap());
    assert!(s.repo("acme/app").await.unwrap().is_none());
    s.ping().await.unwrap();
}

async fn collect(mut st: portcullis_core::ports::ByteStream) -> Vec<u8> {
    let mut v = Vec::new();
    while let Some(c) = st.next().await {
        v.extend_from_slice(&c.unwrap());
    }
    v
}

/// A digest from its text.
fn d(s: &str) -> oci::Digest {
    s.parse().unwrap()
}

pub async fn blob_suite(s: &dyn BlobStore) {
    let digest = &d("sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"); // "test"
    s.upload_create("0a-1").await.unwrap();
    s.upload_write("0a-1", 0, Bytes::from_static(b"te")).await.unwrap();
    let mut w = s.upload_writer("0a-1").await.unwrap();
    tokio::task::spawn_blocking(move || w.write_all(b"st")).await.unwrap().unwrap();
    assert_eq!(collect(s.upload_read("0a-1").await.unwrap()).await, b"test");
    assert_eq!(s.stat(digest).await.unwrap(), None, "not visible before commit");
    let growing = s.upload_open("0a-1").await.unwrap();
    s.upload_commit("0a-1", digest, 4).await.unwrap();
    assert_eq!(s.stat(digest).await.unwrap(), Some(4));
    let (n, buf) = tokio::task::spawn_blocking(move || {
        let mut buf = [0u8; 3];
        (growing.read_at(&mut buf, 1).unwrap(), buf)
    })
    .await
    .unwrap();
    assert_eq!(n, 3, "an open upload stays readable after commit");
    assert_eq!(&buf, b"est");
    assert_eq!(collect(s.read(digest, 0, 4).await.unwrap()).await, b"test");
    assert_eq!(collect(s.read(digest, 1, 2).await.unwrap()).await, b"es");
    // content that is not there is NotFound on every backend (not a storage failure)
    let absent = &d("sha256:0000000000000000000000000000000000000000000000000000000000000000");
    assert!(matches!(s.read(absent, 0, 1).await, Err(Error::NotFound(_))), "a missing blob's content");
    // bytes past the recorded size (a write whose metadata update failed) are overwritten or
    // left out of the commit; a write past the end is refused or makes the upload uncommittable
    let abcd = &d("sha256:88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589");
    s.upload_create("0a-5").await.unwrap();
    s.upload_write("0a-5", 0, Bytes::from_static(b"ab")).await.unwrap();
    s.upload_write("0a-5", 2, Bytes::from_static(b"XXXX")).await.unwrap();
    s.upload_write("0a-5", 2, Bytes::from_static(b"cd")).await.unwrap();
    let _ = s.upload_write("0a-5", 9, Bytes::from_static(b"!")).await;
    assert!(s.upload_commit("0a-5", abcd, 10).await.is_err(), "a gap is never committed");
    s.upload_write("0a-5", 4, Bytes::from_static(b"zz")).await.unwrap();
    assert!(s.upload_commit("0a-5", abcd, 7).await.is_err(), "more than the upload holds");
    assert_eq!(s.stat(abcd).await.unwrap(), None);
    s.upload_commit("0a-5", abcd, 4).await.unwrap();
    assert_eq!(collect(s.read(abcd, 0, 4).await.unwrap()).await, b"abcd");
    s.delete(abcd).await.unwrap();
    // uploads are listed with when they were written, until deleted
    s.upload_create("0a-6").await.unwrap();
    s.upload_write("0a-6", 0, Bytes::from_static(b"x")).await.unwrap();
    let listed = s.list_uploads().await.unwrap();
    let t = listed.iter().find(|u| u.id == "0a-6").map(|u| u.written_at).expect("listed");
    assert!((t - portcullis_core::clock::system_now()).abs() < 300, "written just now: {t}");
    s.upload_delete("0a-6").await.unwrap();
    assert!(!s.list_uploads().await.unwrap().iter().any(|u| u.id == "0a-6"));
    // committing the same content again is harmless
    s.upload_create("0a-2").await.unwrap();
    s.upload_write("0a-2", 0, Bytes::from_static(b"test")).await.unwrap();
    s.upload_commit("0a-2", digest, 4).await.unwrap();
    assert_eq!(s.stat(digest).await.unwrap(), Some(4));
    // large content crosses chunk boundaries
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let big_digest = &d("sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    s.upload_create("0a-3").await.unwrap();
    s.upload_write("0a-3", 0, Bytes::from(big.clone())).await.unwrap();
    s.upload_commit("0a-3", big_digest, big.len() as u64).await.unwrap();
    assert_eq!(collect(s.read(big_digest, 0, big.len() as u64).await.unwrap()).await, big);
    assert_eq!(collect(s.read(big_digest, 1_000_000, 10).await.unwrap()).await, &big[1_000_000..1_000_010]);
    assert_eq!(s.list().await.unwrap(), vec![digest.to_string(), big_digest.to_string()]);
    s.delete(big_digest).await.unwrap();
    assert_eq!(s.stat(big_digest).await.unwrap(), None);
    s.delete(big_digest).await.unwrap();
    // a quarantined blob is no longer served; stores made without redirects hand out no URL
    s.upload_create("0a-7").await.unwrap();
    s.upload_write("0a-7", 0, Bytes::from_static(b"abcd")).await.unwrap();
    s.upload_commit("0a-7", abcd, 4).await.unwrap();
    assert_eq!(s.redirect_url(abcd).await.unwrap(), None);
    s.quarantine(abcd).await.unwrap();
    assert_eq!(s.stat(abcd).await.unwrap(), None);
    assert!(!s.list().await.unwrap().contains(&abcd.to_string()));
    // cancelled uploads vanish; bad ids are refused
    s.upload_create("0a-4").await.unwrap();
    s.upload_delete("0a-4").await.unwrap();
    s.upload_delete("0a-4").await.unwrap();
    assert!(s.upload_create("../etc").await.is_err());
    s.ping().await.unwrap();
}

#[cfg(test)]
mod tests {
    use portcullis_core::memory::{MemoryBlobs, MemoryMeta};

    #[tokio::test]
    async fn the_memory_stores_pass_the_suites() {
        super::meta_suite(&MemoryMeta::new()).await;
        let blobs = MemoryBlobs::new();
        super::blob_suite(&blobs).await;
        assert_eq!(
            portcullis_core::ports::BlobStore::list(&blobs).await.unwrap().len(),
            1,
            "one committed blob remains"
        );
    }
}
