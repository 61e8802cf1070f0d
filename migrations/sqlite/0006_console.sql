-- Web console: sign-in sessions (the cookie's secret is stored hashed) and members' requests
-- for Image Access Management exceptions with the owners' decisions.
CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
CREATE TABLE exception_requests (
    id INTEGER PRIMARY KEY,
    org_id INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    requester TEXT NOT NULL,
    image TEXT NOT NULL,
    digest TEXT,
    reason TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'declined')),
    created_at INTEGER NOT NULL,
    decided_by TEXT,
    decided_at INTEGER,
    note TEXT,
    exception_id INTEGER
);
CREATE INDEX exception_requests_by_org ON exception_requests (org_id, id);
CREATE INDEX audit_by_org_time ON audit_log (org, at);
