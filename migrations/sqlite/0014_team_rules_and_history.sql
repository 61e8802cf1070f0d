-- Team rules: a team's own Image Access Management categories (JSON), which widen what its
-- members may pull beyond the org's. Policy history: every change of an org's settings, team
-- rules or exceptions is a numbered version holding the whole policy after it (JSON), with its
-- author and a summary, so that any version can be compared and restored. Docker Hub badges
-- looked up for namespaces the catalog does not know, with their expiry (a NULL badge: none,
-- community), so that a restart or another replica does not ask again.
CREATE TABLE team_settings (
    team_id INTEGER PRIMARY KEY REFERENCES teams(id) ON DELETE CASCADE,
    settings TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TRIGGER team_settings_insert_generation AFTER INSERT ON team_settings BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER team_settings_update_generation AFTER UPDATE ON team_settings BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER team_settings_delete_generation AFTER DELETE ON team_settings BEGIN UPDATE generation SET value = value + 1; END;
CREATE TABLE policy_versions (
    org_id INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    author TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    summary TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (org_id, version)
);
CREATE TABLE hub_badges (
    namespace TEXT PRIMARY KEY,
    badge TEXT,
    expires_at INTEGER NOT NULL
);
