-- Workload token issuers the administrator added at run time (the configured ones are in the
-- configuration file): the issuer's settings as a JSON document; replicas reload them when the
-- generation moves.
CREATE TABLE workload_issuers (
    name TEXT PRIMARY KEY,
    issuer TEXT NOT NULL UNIQUE,
    document TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TRIGGER workload_issuers_insert_generation AFTER INSERT ON workload_issuers BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER workload_issuers_update_generation AFTER UPDATE ON workload_issuers BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER workload_issuers_delete_generation AFTER DELETE ON workload_issuers BEGIN UPDATE generation SET value = value + 1; END;
