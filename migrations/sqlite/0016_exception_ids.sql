-- Exception ids are never given again after a delete (an audit entry or a request that names
-- exception 2 must not come to mean another one): SQLite reuses the largest rowid unless the key
-- is AUTOINCREMENT, so the table is rebuilt with it, rows and ids kept.
CREATE TABLE exceptions_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    pattern TEXT NOT NULL,
    digest TEXT,
    team TEXT,
    expires_at INTEGER,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
INSERT INTO exceptions_new (id, org_id, pattern, digest, team, expires_at, reason, created_by, created_at)
    SELECT id, org_id, pattern, digest, team, expires_at, reason, created_by, created_at FROM exceptions;
-- ids given before this version and deleted since are unknown; those exception requests name
-- are not given again either
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'exceptions_new', 0 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'exceptions_new');
UPDATE sqlite_sequence SET seq = MAX(seq, COALESCE((SELECT MAX(exception_id) FROM exception_requests), 0))
    WHERE name = 'exceptions_new';
DROP TABLE exceptions;
ALTER TABLE exceptions_new RENAME TO exceptions;
CREATE INDEX exceptions_by_org ON exceptions (org_id);
CREATE TRIGGER exceptions_insert_generation AFTER INSERT ON exceptions BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER exceptions_update_generation AFTER UPDATE ON exceptions BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER exceptions_delete_generation AFTER DELETE ON exceptions BEGIN UPDATE generation SET value = value + 1; END;
