//! Classification and the decision.

use serde::{Deserialize, Serialize};

use crate::model::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    Allow,
    Deny,
    /// Dry-run: served, but the org's settings would deny it.
    WouldDeny,
}

/// The outcome, with what decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub effect: Effect,
    /// The org whose settings decided (for denials).
    pub org: Option<String>,
    pub rule: Rule,
    pub category: Option<Category>,
    pub message: String,
    /// The exception that allowed what the org's settings would refuse (rule `exception`).
    pub exception: Option<i64>,
}

/// The rule a decision names (the audit's `rule`, the check's `rule`): one vocabulary for every
/// surface, serialized as its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Nothing restricts the image for this subject.
    Allowed,
    /// An owner of an org with restrictions on: owners bypass their own org's policy.
    Owner,
    /// Image Access Management: the image's category is not allowed.
    Category,
    /// Registry Access Management: the image's registry is not allowed.
    RegistryAccess,
    /// A signature requirement is not met.
    Signature,
    /// An owner's exception allows what the org's settings refuse (`Decision::exception`).
    Exception,
}

impl Rule {
    pub const ALL: [Rule; 6] =
        [Rule::Allowed, Rule::Owner, Rule::Category, Rule::RegistryAccess, Rule::Signature, Rule::Exception];

    pub fn key(self) -> &'static str {
        match self {
            Rule::Allowed => "allowed",
            Rule::Owner => "owner",
            Rule::Category => "category",
            Rule::RegistryAccess => "registry_access",
            Rule::Signature => "signature",
            Rule::Exception => "exception",
        }
    }
}

impl std::str::FromStr for Rule {
    type Err = UnknownKey;

    fn from_str(s: &str) -> Result<Rule, UnknownKey> {
        Rule::ALL.into_iter().find(|r| r.key() == s).ok_or_else(|| UnknownKey(s.to_owned()))
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

impl Decision {
    /// Whether an owner's exception can waive this denial (categories and registries; never a
    /// signature requirement), so a refusal may offer to request one.
    pub fn exceptable(&self) -> bool {
        matches!(self.rule, Rule::Category | Rule::RegistryAccess)
    }
}

/// The category of `image` for organization `org`.
pub fn categorize(org: &str, settings: &Settings, image: &Image, catalog: &Catalog) -> Category {
    let ns = image.namespace();
    match image.registry.as_deref() {
        None if ns == org => Category::Organization(org.to_owned()),
        // Hosted in another org's or a user's namespace: community for everybody else.
        None => Category::Community,
        Some(DOCKER_HUB) if ns == "library" => Category::Official,
        Some(DOCKER_HUB) if settings.docker_hub_namespaces.iter().any(|n| n == ns) => {
            Category::Organization(org.to_owned())
        }
        Some(DOCKER_HUB) => match catalog.badges.get(ns) {
            Some(Badge::VerifiedPublisher) => Category::VerifiedPublisher,
            Some(Badge::OpenSource) => Category::SponsoredOss,
            None => Category::Community,
        },
        Some(host) => Category::OtherRegistry(host.to_owned()),
    }
}

/// Whether the four Docker Hub category flags (an org's or a team's) allow `c`; images of
/// the org itself or of other registries are not theirs to allow.
fn flags_allow(f: &TeamCategories, c: &Category) -> bool {
    match c {
        Category::Official => f.allow_official_images,
        Category::VerifiedPublisher => f.allow_verified_publishers,
        // Docker counts Docker-Sponsored Open Source images as community images: allowing
        // community allows them; `allow_sponsored_oss` allows them without community.
        Category::SponsoredOss => f.allow_sponsored_oss || f.allow_community,
        Category::Community => f.allow_community,
        Category::Organization(_) | Category::OtherRegistry(_) => false,
    }
}

fn allowed_by_category(r: &RestrictedImages, c: &Category) -> bool {
    matches!(c, Category::Organization(_) | Category::OtherRegistry(_)) || flags_allow(&r.flags(), c)
}

/// The first of `teams` whose own rule allows `c` (a team rule only widens the org's).
fn team_allowing<'a>(p: &OrgPolicy, teams: &'a [String], c: &Category) -> Option<&'a String> {
    teams.iter().find(|t| p.teams.get(t.as_str()).is_some_and(|ts| flags_allow(&ts.restricted_images, c)))
}

/// Why one org refuses the image, if it does (its exceptions considered).
fn refusal(
    m: &Membership,
    p: &OrgPolicy,
    image: &Image,
    catalog: &Catalog,
    now: i64,
) -> Option<(Rule, Category, String)> {
    restriction(m, p, image, catalog)
        .filter(|_| p.exception_for(&image.canonical(), image.digest.as_deref(), &m.teams, now).is_none())
}

/// Why one org's settings refuse the image, exceptions aside.
fn restriction(m: &Membership, p: &OrgPolicy, image: &Image, catalog: &Catalog) -> Option<(Rule, Category, String)> {
    let s = &p.settings;
    let category = categorize(&m.org, s, image, catalog);
    let registry = image.registry.as_deref();
    if s.registry_access.enabled
        && let Some(host) = registry
        && !s.registry_access.allowed_registries.iter().any(|a| a == host)
    {
        let msg = format!(
            "Registry Access Management: registry {host} is not allowed for members of {}. Ask an owner of {} to allow it or to add an exception for {}.",
            m.org,
            m.org,
            image.canonical()
        );
        return Some((Rule::RegistryAccess, category, msg));
    }
    if s.restricted_images.enabled
        && !m.owner
        && !allowed_by_category(&s.restricted_images, &category)
        && team_allowing(p, &m.teams, &category).is_none()
    {
        let msg = format!(
            "Image Access Management: {} {} is not allowed for members of {}. Ask an owner of {} for an exception.",
            category.label(),
            image.canonical(),
            m.org,
            m.org
        );
        return Some((Rule::Category, category, msg));
    }
    None
}

/// One org's part in a decision, for `check` and the impact preview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceStep {
    pub org: String,
    pub owner: bool,
    pub restrictions_enabled: bool,
    pub mode: Mode,
    pub category: Category,
    pub allowed_by_category: bool,
    pub registry_access_enabled: bool,
    /// The team whose own rule allows the image's category, if one does.
    pub team_rule: Option<String>,
    /// The id of the exception that allows the image, if one does.
    pub exception: Option<i64>,
    /// `allow`, `deny` or `would_deny`, with the rule.
    pub outcome: String,
}

/// The decision with every org's step, in the order they were considered.
pub fn explain(memberships: &[Membership], image: &Image, snap: &Snapshot, now: i64) -> (Decision, Vec<TraceStep>) {
    let unset = OrgPolicy::default();
    let steps = memberships
        .iter()
        .map(|m| (m, snap.orgs.get(&m.org).unwrap_or(&unset)))
        .map(|(m, p)| {
            let s = &p.settings;
            let category = categorize(&m.org, s, image, &snap.catalog);
            let outcome = match refusal(m, p, image, &snap.catalog, now) {
                None if s.restricted_images.enabled && m.owner => "allow (owner bypass)".to_owned(),
                None => "allow".to_owned(),
                Some((rule, _, _)) if s.restricted_images.mode == Mode::DryRun => format!("would_deny ({rule})"),
                Some((rule, _, _)) => format!("deny ({rule})"),
            };
            TraceStep {
                org: m.org.clone(),
                owner: m.owner,
                restrictions_enabled: s.restricted_images.enabled,
                mode: s.restricted_images.mode,
                allowed_by_category: allowed_by_category(&s.restricted_images, &category),
                team_rule: team_allowing(p, &m.teams, &category).cloned(),
                registry_access_enabled: s.registry_access.enabled,
                exception: p.exception_for(&image.canonical(), image.digest.as_deref(), &m.teams, now).map(|e| e.id),
                category,
                outcome,
            }
        })
        .collect();
    (decide(memberships, image, snap, now), steps)
}

/// Decides whether the subject (its memberships) may pull `image`.
pub fn decide(memberships: &[Membership], image: &Image, snap: &Snapshot, now: i64) -> Decision {
    let mut would: Option<Decision> = None;
    let mut excepted: Option<Decision> = None;
    let name = image.canonical();
    for m in memberships {
        let Some(p) = snap.orgs.get(&m.org) else { continue };
        // Owners bypass their own org's image restrictions; Registry Access Management binds all.
        let Some((rule, category, message)) = restriction(m, p, image, &snap.catalog) else { continue };
        if let Some(e) = p.exception_for(&name, image.digest.as_deref(), &m.teams, now) {
            excepted.get_or_insert(Decision {
                effect: Effect::Allow,
                org: Some(m.org.clone()),
                rule: Rule::Exception,
                category: Some(category),
                message: format!("{name} is allowed by exception {} of {} ({})", e.id, m.org, e.reason),
                exception: Some(e.id),
            });
            continue;
        }
        let d = Decision {
            effect: Effect::Deny,
            org: Some(m.org.clone()),
            rule,
            category: Some(category),
            message,
            exception: None,
        };
        if p.settings.restricted_images.mode == Mode::Enforce {
            return d;
        }
        would.get_or_insert(Decision { effect: Effect::WouldDeny, ..d });
    }
    would.or(excepted).unwrap_or(Decision {
        effect: Effect::Allow,
        org: None,
        rule: Rule::Allowed,
        category: None,
        message: format!("{name} is allowed"),
        exception: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hub(path: &str) -> Image {
        Image { registry: Some(DOCKER_HUB.into()), path: path.into(), digest: None }
    }

    fn snap(settings: Settings, exceptions: Vec<Exception>) -> Snapshot {
        let mut s = Snapshot::default();
        s.catalog.badges.insert("bitnami".into(), Badge::VerifiedPublisher);
        s.catalog.badges.insert("grafana".into(), Badge::OpenSource);
        s.orgs.insert("acme".into(), OrgPolicy::new(settings, exceptions));
        s
    }

    fn on() -> Settings {
        Settings { restricted_images: RestrictedImages { enabled: true, ..Default::default() }, ..Default::default() }
    }

    fn member(owner: bool) -> Vec<Membership> {
        vec![Membership { org: "acme".into(), owner, teams: vec!["dev".into()] }]
    }

    fn exception(pattern: &str) -> Exception {
        Exception {
            id: 1,
            pattern: pattern.into(),
            digest: None,
            team: None,
            expires_at: None,
            reason: "r".into(),
            created_by: "o".into(),
            created_at: 0,
        }
    }

    #[test]
    fn one_table_names_every_category_and_its_switch() {
        let all = [
            Category::Organization("o".into()),
            Category::Official,
            Category::VerifiedPublisher,
            Category::SponsoredOss,
            Category::Community,
            Category::OtherRegistry("h".into()),
        ];
        let keys: Vec<&str> = Category::ALL.iter().map(|c| c.key).collect();
        assert_eq!(keys, all.iter().map(|c| c.key()).collect::<Vec<_>>(), "one row per category, in order");
        // each switch is a settings flag (org and team rule alike), read and written by its row
        let json = serde_json::to_value(RestrictedImages::default()).unwrap();
        let team = serde_json::to_value(TeamCategories::default()).unwrap();
        for sw in &Category::SWITCHES {
            assert!(json.get(sw.flag).is_some() && team.get(sw.flag).is_some(), "{}", sw.flag);
            let mut t = TeamCategories::default();
            (sw.set)(&mut t, true);
            assert!((sw.get)(&t));
            assert_eq!(serde_json::to_value(&t).unwrap()[sw.flag], true, "{} sets its own flag", sw.flag);
            assert_eq!(t.allowed_labels(), [sw.name.label]);
            let mut r = RestrictedImages {
                allow_official_images: false,
                allow_verified_publishers: false,
                ..Default::default()
            };
            r.set_flags(&t);
            assert_eq!(r.flags(), t);
        }
        assert_eq!(Category::name_of("sponsored_oss").map(|n| n.short), Some("Sponsored OSS"));
        assert!(Category::name_of("nothing").is_none());
        // rules serialize as their keys
        assert_eq!(serde_json::to_value(Rule::RegistryAccess).unwrap(), "registry_access");
        assert_eq!(Rule::Signature.to_string(), "signature");
    }

    #[test]
    fn categories() {
        let s = Settings { docker_hub_namespaces: vec!["acmecorp".into()], ..Default::default() };
        let c = |i: &Image| categorize("acme", &s, i, &snap(on(), vec![]).catalog);
        assert_eq!(c(&hub("library/alpine")), Category::Official);
        assert_eq!(c(&hub("bitnami/redis")), Category::VerifiedPublisher);
        assert_eq!(c(&hub("grafana/grafana")), Category::SponsoredOss);
        assert_eq!(c(&hub("someone/app")), Category::Community);
        assert_eq!(c(&hub("acmecorp/tool")), Category::Organization("acme".into()));
        assert_eq!(c(&hub("bitnamievil/redis")), Category::Community, "anchored");
        assert_eq!(
            c(&Image { registry: None, path: "acme/app".into(), digest: None }),
            Category::Organization("acme".into())
        );
        assert_eq!(c(&Image { registry: None, path: "acmeevil/app".into(), digest: None }), Category::Community);
        assert_eq!(
            c(&Image { registry: Some("ghcr.io".into()), path: "o/a".into(), digest: None }),
            Category::OtherRegistry("ghcr.io".into())
        );
    }

    #[test]
    fn decision_table() {
        let s = snap(on(), vec![]);
        let d = decide(&member(false), &hub("someone/app"), &s, 0);
        assert_eq!(d.effect, Effect::Deny);
        assert_eq!(
            d.message,
            "Image Access Management: community image docker.io/someone/app is not allowed for members of acme. Ask an owner of acme for an exception."
        );
        assert_eq!(decide(&member(false), &hub("library/alpine"), &s, 0).effect, Effect::Allow);
        assert_eq!(decide(&member(true), &hub("someone/app"), &s, 0).effect, Effect::Allow, "owners bypass");
        assert_eq!(decide(&[], &hub("someone/app"), &s, 0).effect, Effect::Allow, "non-members are not bound");
        // dry run
        let mut dry = on();
        dry.restricted_images.mode = Mode::DryRun;
        assert_eq!(decide(&member(false), &hub("someone/app"), &snap(dry, vec![]), 0).effect, Effect::WouldDeny);
        // exceptions: pattern, team, expiry, digest
        let mut e = exception("docker.io/someone/*");
        let d = decide(&member(false), &hub("someone/app"), &snap(on(), vec![e.clone()]), 0);
        assert_eq!(
            (d.effect, d.rule, d.exception, d.org.as_deref()),
            (Effect::Allow, Rule::Exception, Some(e.id), Some("acme"))
        );
        assert_eq!(d.category, Some(Category::Community), "the category the exception waived");
        assert!(d.message.contains(&format!("allowed by exception {} of acme", e.id)), "{}", d.message);
        assert_eq!(
            decide(&member(false), &hub("someoneelse/app"), &snap(on(), vec![e.clone()]), 0).effect,
            Effect::Deny
        );
        e.expires_at = Some(10);
        assert_eq!(
            decide(&member(false), &hub("someone/app"), &snap(on(), vec![e.clone()]), 10).effect,
            Effect::Deny,
            "expired"
        );
        e.expires_at = None;
        e.team = Some("ops".into());
        assert_eq!(
            decide(&member(false), &hub("someone/app"), &snap(on(), vec![e.clone()]), 0).effect,
            Effect::Deny,
            "other team"
        );
        let mut pinned = exception("docker.io/someone/app");
        pinned.digest = Some("sha256:aa".into());
        let mut img = hub("someone/app");
        assert_eq!(
            decide(&member(false), &img, &snap(on(), vec![pinned.clone()]), 0).effect,
            Effect::Deny,
            "tag is not the pin"
        );
        img.digest = Some("sha256:aa".into());
        assert_eq!(decide(&member(false), &img, &snap(on(), vec![pinned]), 0).effect, Effect::Allow);
        // registry access management binds owners too
        let ram = Settings {
            registry_access: RegistryAccess { enabled: true, allowed_registries: vec!["docker.io".into()] },
            ..Default::default()
        };
        let ghcr = Image { registry: Some("ghcr.io".into()), path: "o/a".into(), digest: None };
        let d = decide(&member(true), &ghcr, &snap(ram, vec![]), 0);
        assert_eq!((d.effect, d.rule), (Effect::Deny, Rule::RegistryAccess));
    }

    #[test]
    fn explain_traces_each_org() {
        let (d, steps) = explain(&member(false), &hub("someone/app"), &snap(on(), vec![]), 0);
        assert_eq!(d.effect, Effect::Deny);
        assert_eq!(steps.len(), 1);
        assert_eq!((steps[0].category.clone(), steps[0].outcome.as_str()), (Category::Community, "deny (category)"));
        let (_, steps) = explain(&member(true), &hub("someone/app"), &snap(on(), vec![]), 0);
        assert_eq!(steps[0].outcome, "allow (owner bypass)");
    }

    #[test]
    fn docker_hub_json_shape() {
        let s: Settings = serde_json::from_str(
            r#"{"restricted_images":{"enabled":true,"allow_official_images":true,"allow_verified_publishers":false}}"#,
        )
        .unwrap();
        assert!(
            s.restricted_images.enabled
                && !s.restricted_images.allow_verified_publishers
                && !s.restricted_images.allow_community
        );
        assert!(serde_json::from_str::<Settings>(r#"{"restricted_images":{"enabld":true}}"#).is_err());
        let d = Settings::default();
        assert!(!d.restricted_images.enabled && !d.registry_access.enabled);
    }

    #[test]
    fn sponsored_open_source_counts_as_community() {
        let with = |sponsored: bool, community: bool| {
            let mut s = on();
            s.restricted_images.allow_sponsored_oss = sponsored;
            s.restricted_images.allow_community = community;
            decide(&member(false), &hub("grafana/grafana"), &snap(s, vec![]), 0).effect
        };
        assert_eq!(with(false, false), Effect::Deny);
        assert_eq!(with(true, false), Effect::Allow, "our switch: sponsored OSS without community");
        assert_eq!(with(false, true), Effect::Allow, "allowing community allows sponsored OSS (Docker)");
        assert_eq!(with(true, true), Effect::Allow);
    }

    fn with_team_rule(s: Settings, team: &str, rule: TeamCategories) -> Snapshot {
        let mut sn = snap(s, vec![]);
        let p = sn.orgs.get_mut("acme").unwrap();
        p.teams.insert(team.into(), TeamSettings { restricted_images: rule });
        sn
    }

    #[test]
    fn a_team_rule_widens_what_its_members_may_pull() {
        let community = TeamCategories { allow_community: true, ..Default::default() };
        let sn = with_team_rule(on(), "platform", community.clone());
        let platform =
            vec![Membership { org: "acme".into(), owner: false, teams: vec!["dev".into(), "platform".into()] }];
        assert_eq!(decide(&platform, &hub("someone/app"), &sn, 0).effect, Effect::Allow);
        assert_eq!(
            decide(&platform, &hub("grafana/grafana"), &sn, 0).effect,
            Effect::Allow,
            "sponsored OSS is community"
        );
        assert_eq!(decide(&member(false), &hub("someone/app"), &sn, 0).effect, Effect::Deny, "dev alone: denied");
        let (_, steps) = explain(&platform, &hub("someone/app"), &sn, 0);
        assert_eq!((steps[0].team_rule.as_deref(), steps[0].outcome.as_str()), (Some("platform"), "allow"));
        // a team rule in another org does nothing here
        let other = vec![Membership { org: "other".into(), owner: false, teams: vec!["platform".into()] }];
        let mut two = sn.clone();
        two.orgs.insert("other".into(), OrgPolicy::new(Settings::default(), vec![]));
        let both: Vec<Membership> = member(false).into_iter().chain(other).collect();
        assert_eq!(decide(&both, &hub("someone/app"), &two, 0).effect, Effect::Deny);
        // Registry Access Management is not widened by team rules
        let mut ram = on();
        ram.registry_access.enabled = true;
        let sn = with_team_rule(ram, "platform", community);
        let ghcr = Image { registry: Some("ghcr.io".into()), path: "o/t".into(), digest: None };
        assert_eq!(decide(&platform, &ghcr, &sn, 0).effect, Effect::Deny);
    }

    fn any_team_rule() -> impl Strategy<Value = TeamCategories> {
        any::<[bool; 4]>().prop_map(|b| TeamCategories {
            allow_official_images: b[0],
            allow_verified_publishers: b[1],
            allow_sponsored_oss: b[2],
            allow_community: b[3],
        })
    }

    proptest! {
        #[test]
        fn a_team_rule_never_narrows(img in crate::strategies::image(), s in crate::strategies::settings(), rule in any_team_rule(), owner in any::<bool>()) {
            let m = vec![Membership { org: "acme".into(), owner, teams: vec!["platform".into()] }];
            let before = decide(&m, &img, &snap(s.clone(), vec![]), 0).effect;
            let after = decide(&m, &img, &with_team_rule(s, "platform", rule), 0).effect;
            if before == Effect::Allow { prop_assert_eq!(after, Effect::Allow); }
            if before == Effect::WouldDeny { prop_assert_ne!(after, Effect::Deny); }
        }

        #[test]
        fn owners_are_never_denied_by_their_orgs_image_rules_with_team_rules(img in crate::strategies::image(), mut s in crate::strategies::settings(), rule in any_team_rule()) {
            s.registry_access.enabled = false;
            prop_assert_eq!(decide(&member(true), &img, &with_team_rule(s, "dev", rule), 0).effect, Effect::Allow);
        }

        #[test]
        fn allowing_community_allows_sponsored_open_source_too(img in crate::strategies::image(), mut s in crate::strategies::settings()) {
            s.registry_access.enabled = false;
            s.restricted_images.allow_community = true;
            let sn = snap(s.clone(), vec![]);
            let c = categorize("acme", &s, &img, &sn.catalog);
            let effect = decide(&member(false), &img, &sn, 0).effect;
            prop_assert!(!matches!(c, Category::Community | Category::SponsoredOss) || effect != Effect::Deny, "{c:?} {effect:?}");
        }

        #[test]
        fn owners_are_never_denied_by_image_restrictions(img in crate::strategies::image(), mut s in crate::strategies::settings()) {
            s.registry_access.enabled = false;
            prop_assert_eq!(decide(&member(true), &img, &snap(s, vec![]), 0).effect, Effect::Allow);
        }

        #[test]
        fn turning_restrictions_off_never_denies(img in crate::strategies::image(), mut s in crate::strategies::settings()) {
            s.restricted_images.enabled = false;
            s.registry_access.enabled = false;
            prop_assert_eq!(decide(&member(false), &img, &snap(s, vec![]), 0).effect, Effect::Allow);
        }

        #[test]
        fn adding_an_exception_never_turns_allow_into_deny(img in crate::strategies::image(), s in crate::strategies::settings(), pat in "(docker.io|ghcr.io)/[a-z]{1,6}(/\\*)?") {
            let before = decide(&member(false), &img, &snap(s.clone(), vec![]), 0).effect;
            let after = decide(&member(false), &img, &snap(s, vec![exception(&pat)]), 0).effect;
            if before == Effect::Allow { prop_assert_eq!(after, Effect::Allow); }
        }
    }
}
