//! The SCIM service on the in-memory store: token scopes, what each token sees, and every
//! write with its rules.

use std::sync::Arc;

use serde_json::{Value, json};

use super::*;
use crate::authz::Directory;
use crate::clock::SystemClock;
use crate::memory::MemoryMeta;
use crate::metrics::Metrics;
use crate::model::TokenScope;
use crate::ports::{IdentityStore, OrgStore, SessionStore};

const BASE: &str = "https://r.example/scim/v2";

struct T {
    meta: Arc<MemoryMeta>,
    scim: Scim,
    identity: Arc<Identity>,
    admin: Principal,
    olivia: Principal,
}

async fn setup() -> T {
    let meta = Arc::new(MemoryMeta::new());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let audit = Arc::new(Audit::start(meta.clone(), 0, clock.clone()));
    let identity =
        Arc::new(Identity::new(meta.clone(), Directory::default(), clock, audit.clone(), Arc::new(Metrics::default())));
    let admin = meta.create_user("admin", "x", true, 1).await.unwrap();
    let olivia = meta.create_user("olivia", "x", false, 1).await.unwrap();
    let mallory = meta.create_user("mallory", "x", false, 1).await.unwrap();
    let acme = meta.create_org("acme", olivia.id, 1).await.unwrap();
    meta.create_org("other", mallory.id, 1).await.unwrap();
    let dev = meta.create_team(acme.id, "dev").await.unwrap();
    meta.add_member(dev.id, mallory.id).await.unwrap();
    identity.refresh_directory().await.unwrap();
    let p = |u: &User| Principal { id: u.id, username: u.username.clone(), is_admin: u.is_admin, scope: None };
    T { scim: Scim::new(meta.clone(), identity.clone(), audit), meta, identity, admin: p(&admin), olivia: p(&olivia) }
}

impl T {
    async fn caller(&self, who: &Principal, org: Option<&str>) -> Caller {
        let (_, secret) = self.scim.create_token(who, org, "idp").await.unwrap();
        self.scim.authenticate(&secret, "10.0.0.1").await.unwrap()
    }
}

fn user(name: &str) -> Value {
    json!({ "schemas": [schema::USER], "userName": name, "emails": [{"value": format!("{name}@x.org"), "type": "work"}] })
}

fn ids(list: &Value) -> Vec<String> {
    list["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["userName"].as_str().or(r["displayName"].as_str()).unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn tokens_belong_to_an_org_or_the_instance_and_only_their_owners_make_them() {
    let t = setup().await;
    let mallory = Principal { id: 3, username: "mallory".into(), is_admin: false, scope: None };
    assert!(matches!(t.scim.create_token(&mallory, Some("acme"), "x").await, Err(Error::Denied(_))), "a member");
    assert!(matches!(t.scim.create_token(&t.olivia, None, "x").await, Err(Error::Denied(_))), "instance: admin only");
    assert!(matches!(t.scim.create_token(&t.olivia, Some("acme"), " ").await, Err(Error::Invalid(_))));
    let (tok, secret) = t.scim.create_token(&t.olivia, Some("acme"), "okta").await.unwrap();
    assert!(secret.starts_with(SCIM_PREFIX));
    assert_eq!(t.scim.authenticate(&secret, "x").await.unwrap().org.unwrap().name, "acme");
    assert!(matches!(t.scim.authenticate("pcscim_nope", "x").await, Err(Error::Unauthenticated(_))));
    assert!(matches!(t.scim.delete_token(&mallory, tok.id).await, Err(Error::NotFound(_))), "not theirs to see");
    assert_eq!(t.scim.list_tokens(&t.olivia, Some("acme")).await.unwrap().len(), 1);
    t.scim.delete_token(&t.olivia, tok.id).await.unwrap();
    assert!(matches!(t.scim.authenticate(&secret, "x").await, Err(Error::Unauthenticated(_))), "revoked at once");
}

#[tokio::test]
async fn an_org_token_sees_what_it_provisioned_and_the_instance_token_everyone_but_administrators() {
    let t = setup().await;
    let org = t.caller(&t.olivia, Some("acme")).await;
    let inst = t.caller(&t.admin, None).await;
    t.scim.create(&org, Kind::User, BASE, user("alice")).await.unwrap();
    let all = Query::default();
    assert_eq!(ids(&t.scim.list(&org, &[Kind::User], BASE, &all).await.unwrap()), ["alice"]);
    assert_eq!(ids(&t.scim.list(&inst, &[Kind::User], BASE, &all).await.unwrap()), ["alice", "mallory", "olivia"]);
    assert_eq!(ids(&t.scim.list(&org, &[Kind::Group], BASE, &all).await.unwrap()), ["acme:owners", "acme:dev"]);
    assert_eq!(ids(&t.scim.list(&inst, &[Kind::Group], BASE, &all).await.unwrap()).len(), 3);
    // the administrator can never be reached through SCIM
    let admin_id = Kind::User.id(t.admin.id);
    assert!(matches!(
        t.scim.get(&inst, Kind::User, BASE, &admin_id, &all).await,
        Err(Failure { error: Error::NotFound(_), .. })
    ));
    let q = |f: &str| Query { filter: Some(f.into()), ..Default::default() };
    let found = t.scim.list(&inst, &[Kind::User], BASE, &q(r#"userName eq "ALICE""#)).await.unwrap();
    assert_eq!((ids(&found), found["totalResults"].as_u64()), (vec!["alice".to_owned()], Some(1)));
    assert_eq!(
        ids(&t.scim.list(&inst, &[Kind::User], BASE, &q(r#"emails.value co "@x.org""#)).await.unwrap()),
        ["alice"]
    );
    let bad = t.scim.list(&inst, &[Kind::User], BASE, &q("userName eq")).await.unwrap_err();
    assert_eq!(bad.scim_type, Some("invalidFilter"));
    let page =
        Query { start_index: Some(2), count: Some(1), attributes: vec!["userName".into()], ..Default::default() };
    let p = t.scim.list(&inst, &[Kind::User], BASE, &page).await.unwrap();
    assert_eq!(
        (ids(&p), p["totalResults"].as_u64(), p["startIndex"].as_u64()),
        (vec!["mallory".to_owned()], Some(3), Some(2))
    );
    let r = &p["Resources"][0];
    assert!(r.get("emails").is_none() && r.get("meta").is_none() && r["id"].is_string(), "{r}");
}

#[tokio::test]
async fn users_are_created_replaced_patched_and_deactivated_with_their_rules() {
    let t = setup().await;
    let org = t.caller(&t.olivia, Some("acme")).await;
    let err = |r: ScimResult<Value>| r.unwrap_err().scim_type;
    assert_eq!(err(t.scim.create(&org, Kind::User, BASE, user("olivia")).await), Some("uniqueness"));
    assert_eq!(err(t.scim.create(&org, Kind::User, BASE, user("Not A Name")).await), Some("invalidValue"));
    assert_eq!(err(t.scim.create(&org, Kind::User, BASE, json!({"userName": "x"})).await), Some("invalidSyntax"));
    let unknown = json!({"schemas": [schema::USER, "urn:example:evil"], "userName": "x"});
    assert_eq!(err(t.scim.create(&org, Kind::User, BASE, unknown).await), Some("invalidSyntax"));
    let typed = json!({"schemas": [schema::USER], "userName": "x", "displayName": 5});
    let e = t.scim.create(&org, Kind::User, BASE, typed).await.unwrap_err();
    assert!(e.error.to_string().starts_with("displayName:"), "{}", e.error);
    assert_eq!(err(t.scim.create(&org, Kind::User, BASE, json!([])).await), Some("invalidSyntax"));

    let alice = t.scim.create(&org, Kind::User, BASE, user("alice")).await.unwrap();
    let id = alice["id"].as_str().unwrap().to_owned();
    assert_eq!(alice["meta"]["location"].as_str(), Some(format!("{BASE}/Users/{id}").as_str()));
    // provisioned without `active`: enabled, and shown without it (as the provider wrote it)
    assert!(alice.get("active").is_none() && !t.meta.user_by_name("alice").await.unwrap().unwrap().disabled);
    let renamed = json!({"schemas": [schema::USER], "userName": "alicia"});
    assert_eq!(err(t.scim.replace(&org, Kind::User, BASE, &id, renamed).await), Some("mutability"));
    let put = json!({"schemas": [schema::USER], "userName": "alice", "displayName": "Alice L", "externalId": "00u1"});
    let r = t.scim.replace(&org, Kind::User, BASE, &id, put).await.unwrap();
    assert_eq!(
        (r["displayName"].as_str(), r["externalId"].as_str(), r.get("emails")),
        (Some("Alice L"), Some("00u1"), None)
    );

    // deactivation (Entra ID's string boolean) ends sessions and revokes every token at once
    let a = t.meta.user_by_name("alice").await.unwrap().unwrap();
    let ap = Principal { id: a.id, username: a.username.clone(), is_admin: false, scope: None };
    let (_, pat) = t.identity.create_pat(&ap, "ci", TokenScope::Read, None).await.unwrap();
    t.meta.create_session("s1", a.id, "c", 1, i64::MAX).await.unwrap();
    let off =
        json!({"schemas": [schema::PATCH_OP], "Operations": [{"op": "Replace", "path": "active", "value": "False"}]});
    assert_eq!(t.scim.patch(&org, Kind::User, BASE, &id, off).await.unwrap()["active"], false);
    assert!(matches!(t.identity.authenticate_token(&pat, "x").await, Err(Error::Unauthenticated(_))));
    assert!(t.meta.list_tokens(a.id).await.unwrap().is_empty() && t.meta.session("s1", 2).await.unwrap().is_none());
    assert!(t.identity.directory().snapshot().user("alice").is_none(), "the gate sees the account disabled");
    let on = json!({"schemas": [schema::PATCH_OP], "Operations": [{"op": "replace", "value": {"active": true}}]});
    assert_eq!(t.scim.patch(&org, Kind::User, BASE, &id, on).await.unwrap()["active"], true);
    let no_schema = json!({"Operations": []});
    assert_eq!(err(t.scim.patch(&org, Kind::User, BASE, &id, no_schema).await), Some("invalidSyntax"));

    t.scim.delete(&org, Kind::User, &id).await.unwrap();
    assert!(t.meta.user_by_name("alice").await.unwrap().is_none());
    let mallory = Kind::User.id(t.meta.user_by_name("mallory").await.unwrap().unwrap().id);
    assert!(
        matches!(t.scim.delete(&org, Kind::User, &mallory).await, Err(Failure { error: Error::NotFound(_), .. })),
        "not this org's"
    );
}

#[tokio::test]
async fn groups_are_teams_and_a_token_changes_only_the_members_it_sees() {
    let t = setup().await;
    let org = t.caller(&t.olivia, Some("acme")).await;
    let inst = t.caller(&t.admin, None).await;
    let alice = t.scim.create(&org, Kind::User, BASE, user("alice")).await.unwrap()["id"].as_str().unwrap().to_owned();
    let g = |name: &str, members: Value| json!({"schemas": [schema::GROUP], "displayName": name, "members": members});
    let ops = t.scim.create(&org, Kind::Group, BASE, g("ops", json!([{"value": alice}]))).await.unwrap();
    assert_eq!((ops["displayName"].as_str(), ops["members"][0]["value"].as_str()), (Some("ops"), Some(alice.as_str())));
    assert!(t.identity.directory().snapshot().is_member("acme", Kind::User.parse_id(&alice).unwrap()));
    let err = |r: ScimResult<Value>| r.unwrap_err().scim_type;
    assert_eq!(err(t.scim.create(&org, Kind::Group, BASE, g("other:ops", json!([]))).await), Some("invalidValue"));
    assert_eq!(err(t.scim.create(&inst, Kind::Group, BASE, g("ops", json!([]))).await), Some("invalidValue"));
    assert_eq!(err(t.scim.create(&inst, Kind::Group, BASE, g("acme:ops", json!([]))).await), Some("uniqueness"));
    assert_eq!(
        err(t.scim.create(&org, Kind::Group, BASE, g("x", json!([{"value": "u999"}]))).await),
        Some("invalidValue")
    );
    let nested = json!([{"value": alice, "type": "Group"}]);
    assert_eq!(err(t.scim.create(&org, Kind::Group, BASE, g("y", nested)).await), Some("invalidValue"));

    // acme:dev has mallory, whom the org token cannot see: replacing its members keeps her
    let dev = t
        .scim
        .list(
            &org,
            &[Kind::Group],
            BASE,
            &Query { filter: Some(r#"displayName eq "acme:dev""#.into()), ..Default::default() },
        )
        .await
        .unwrap();
    let dev_id = dev["Resources"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(dev["Resources"][0]["members"], json!([]), "only visible members are listed");
    t.scim.replace(&org, Kind::Group, BASE, &dev_id, g("acme:dev", json!([{"value": alice}]))).await.unwrap();
    let seen = t.scim.get(&inst, Kind::Group, BASE, &dev_id, &Query::default()).await.unwrap();
    let ids: Vec<&str> = seen["members"].as_array().unwrap().iter().map(|m| m["value"].as_str().unwrap()).collect();
    let mallory = Kind::User.id(t.meta.user_by_name("mallory").await.unwrap().unwrap().id);
    assert_eq!(ids, [alice.as_str(), mallory.as_str()], "mallory's membership stays");
    assert_eq!(
        err(t.scim.replace(&org, Kind::Group, BASE, &dev_id, g("acme:devs", json!([]))).await),
        Some("mutability")
    );
    let rm = json!({"schemas": [schema::PATCH_OP], "Operations": [{"op": "remove", "path": format!("members[value eq \"{alice}\"]")}]});
    assert_eq!(t.scim.patch(&org, Kind::Group, BASE, &dev_id, rm).await.unwrap()["members"], json!([]));
    // the user resource lists its groups
    let a = t.scim.get(&org, Kind::User, BASE, &alice, &Query::default()).await.unwrap();
    assert_eq!(a["groups"][0]["display"], "ops");

    // the owners team stays; the last owner cannot be removed nor deleted
    let owners = t
        .scim
        .list(
            &inst,
            &[Kind::Group],
            BASE,
            &Query { filter: Some(r#"displayName eq "acme:owners""#.into()), ..Default::default() },
        )
        .await
        .unwrap();
    let owners_id = owners["Resources"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(err(t.scim.delete(&inst, Kind::Group, &owners_id).await.map(|_| json!({}))), Some("mutability"));
    let r = t.scim.replace(&inst, Kind::Group, BASE, &owners_id, g("acme:owners", json!([]))).await.unwrap_err();
    assert!(matches!(r.error, Error::Conflict(_)), "{}", r.error);
    let olivia = Kind::User.id(t.olivia.id);
    assert!(matches!(t.scim.delete(&inst, Kind::User, &olivia).await, Err(Failure { error: Error::Conflict(_), .. })));
    let ops_id = ops["id"].as_str().unwrap();
    t.scim.delete(&org, Kind::Group, ops_id).await.unwrap();
    assert!(t.meta.team(t.meta.org_by_name("acme").await.unwrap().unwrap().id, "ops").await.unwrap().is_none());
}

#[tokio::test]
async fn a_directory_sign_in_finds_the_account_scim_provisioned() {
    let t = setup().await;
    let org = t.caller(&t.olivia, Some("acme")).await;
    let id = t.scim.create(&org, Kind::User, BASE, user("alice")).await.unwrap()["id"].as_str().unwrap().to_owned();
    let audit = Arc::new(Audit::start(t.meta.clone(), 0, Arc::new(SystemClock)));
    let sso = crate::sso::Sso::new(t.meta.clone(), t.identity.clone(), audit);
    let ext = crate::sso::ExternalIdentity {
        source: policy::Provider::Oidc,
        external_id: "iss|a".into(),
        username: "alice".into(),
        groups: vec![],
    };
    assert_eq!(Kind::User.id(sso.sign_in(&ext, "x").await.unwrap().id), id);
    let ext = crate::sso::ExternalIdentity { username: "olivia".into(), external_id: "iss|o".into(), ..ext };
    assert!(matches!(sso.sign_in(&ext, "x").await, Err(Error::Conflict(_))), "never a local account");
}

#[tokio::test]
async fn scim_makes_owners_only_where_the_org_opted_in() {
    let t = setup().await;
    let org = t.caller(&t.olivia, Some("acme")).await;
    let inst = t.caller(&t.admin, None).await;
    let alice = t.scim.create(&org, Kind::User, BASE, user("alice")).await.unwrap()["id"].as_str().unwrap().to_owned();
    let q = Query { filter: Some(r#"displayName eq "acme:owners""#.into()), ..Default::default() };
    let owners = t.scim.list(&inst, &[Kind::Group], BASE, &q).await.unwrap();
    let owners_id = owners["Resources"][0]["id"].as_str().unwrap().to_owned();
    let olivia = Kind::User.id(t.olivia.id);
    let group = |m: Value| json!({ "schemas": [schema::GROUP], "displayName": "acme:owners", "members": m });
    // neither the org's token nor the instance's adds an owner without the org's opt-in (each
    // names the members it sees: the org's token does not see olivia, who stays)
    let org_view = json!([{"value": alice}]);
    let inst_view = json!([{"value": olivia}, {"value": alice}]);
    for (caller, members) in [(&org, org_view), (&inst, inst_view)] {
        let r = t.scim.replace(caller, Kind::Group, BASE, &owners_id, group(members)).await.unwrap_err();
        assert_eq!(r.scim_type, Some("mutability"));
        assert!(r.error.to_string().contains("did not let its directory make owners"), "{}", r.error);
    }
    let add = json!({"schemas": [schema::PATCH_OP], "Operations": [{"op": "add", "path": "members", "value": [{"value": alice}]}]});
    assert!(t.scim.patch(&org, Kind::Group, BASE, &owners_id, add.clone()).await.is_err());
    assert!(!t.identity.directory().snapshot().is_owner("acme", Kind::User.parse_id(&alice).unwrap()));
    // with it, the group adds owners
    let acme = t.meta.org_by_name("acme").await.unwrap().unwrap();
    let opt_in = json!({"directory": {"providers": [], "owners": true}}).to_string();
    crate::ports::PolicyStore::put_org_settings(t.meta.as_ref(), acme.id, &opt_in, 1).await.unwrap();
    t.scim.patch(&org, Kind::Group, BASE, &owners_id, add).await.unwrap();
    assert!(t.identity.directory().snapshot().is_owner("acme", Kind::User.parse_id(&alice).unwrap()));
}
