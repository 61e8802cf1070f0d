-- Team rules: a team's own Image Access Management categories (JSON), which widen what its
-- members may pull beyond the org's. Policy history: every change of an org's settings, team
-- rules or exceptions is a numbered version holding the whole policy after it (JSON), with its
-- author and a summary, so that any version can be compared and restored. Docker Hub badges
-- looked up for namespaces the catalog does not know, with their expiry (a NULL badge: none,
-- community), so that a restart or another replica does not ask again.
CREATE TABLE team_settings (
    team_id BIGINT PRIMARY KEY REFERENCES teams(id) ON DELETE CASCADE,
    settings TEXT COLLATE "C" NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TRIGGER team_settings_generation AFTER INSERT OR UPDATE OR DELETE ON team_settings FOR EACH ROW EXECUTE FUNCTION bump_generation();
CREATE TABLE policy_versions (
    org_id BIGINT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    version BIGINT NOT NULL,
    author TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    summary TEXT COLLATE "C" NOT NULL,
    state TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (org_id, version)
);
CREATE TABLE hub_badges (
    namespace TEXT COLLATE "C" PRIMARY KEY,
    badge TEXT COLLATE "C",
    expires_at BIGINT NOT NULL
);
