-- Audit log: pull decisions and changes, per organization (org NULL: not tied to an org).
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    org TEXT,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    image TEXT,
    digest TEXT,
    category TEXT,
    rule TEXT,
    decision TEXT,
    client TEXT,
    user_agent TEXT,
    detail TEXT
);
CREATE INDEX audit_by_org ON audit_log (org, id);
CREATE INDEX audit_by_time ON audit_log (at);
