-- Workload token issuers the administrator added at run time (the configured ones are in the
-- configuration file): the issuer's settings as a JSON document; replicas reload them when the
-- generation moves.
CREATE TABLE workload_issuers (
    name TEXT COLLATE "C" PRIMARY KEY,
    issuer TEXT COLLATE "C" NOT NULL UNIQUE,
    document TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TRIGGER workload_issuers_generation AFTER INSERT OR UPDATE OR DELETE ON workload_issuers FOR EACH ROW EXECUTE FUNCTION bump_generation();
