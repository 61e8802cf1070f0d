-- Image Access Management: per-organization settings (JSON in Docker Hub's shape plus ours)
-- and exceptions (repository allowlist entries).
CREATE TABLE org_settings (
    org_id INTEGER PRIMARY KEY REFERENCES orgs(id) ON DELETE CASCADE,
    settings TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE exceptions (
    id INTEGER PRIMARY KEY,
    org_id INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    pattern TEXT NOT NULL,
    digest TEXT,
    team TEXT,
    expires_at INTEGER,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX exceptions_by_org ON exceptions (org_id);
