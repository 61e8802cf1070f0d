-- SCIM provisioning: bearer tokens an organization's owner (org_id set) or the instance
-- administrator (org_id NULL) creates for their identity provider, kept as SHA-256 hashes; and
-- the SCIM attributes of the users and teams (groups) the provider manages, as JSON, with the
-- organization whose token provisioned a user (NULL: an instance-wide token).
CREATE TABLE scim_tokens (
    id INTEGER PRIMARY KEY,
    org_id INTEGER REFERENCES orgs(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER
);
CREATE TABLE scim_users (
    user_id INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    org_id INTEGER REFERENCES orgs(id) ON DELETE SET NULL,
    attrs TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE scim_groups (
    team_id INTEGER PRIMARY KEY REFERENCES teams(id) ON DELETE CASCADE,
    attrs TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
