-- Replicas: token signing keys shared through the database (the newest signs, all verify), and
-- a generation number that every change to what replicas keep in memory (users, orgs, teams,
-- permissions, repositories, settings, exceptions, publishers, keys) increases, by trigger.
-- Each replica polls it and reloads when it moves.
CREATE TABLE signing_keys (
    kid TEXT COLLATE "C" PRIMARY KEY,
    pkcs8 BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE generation (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    value BIGINT NOT NULL
);
INSERT INTO generation (id, value) VALUES (1, 0);
CREATE FUNCTION bump_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE generation SET value = value + 1;
    RETURN NULL;
END
$$;
CREATE TRIGGER users_generation AFTER INSERT OR UPDATE OR DELETE ON users FOR EACH ROW EXECUTE FUNCTION bump_generation();
CREATE TRIGGER orgs_generation AFTER INSERT OR UPDATE OR DELETE ON orgs FOR EACH ROW EXECUTE FUNCTION bump_generation();
CREATE TRIGGER teams_generation AFTER INSERT OR UPDATE OR DELETE ON teams FOR EACH ROW EXECUTE FUNCTION bump_generation();
CREATE TRIGGER team_members_generation AFTER INSERT OR UPDATE OR DELETE ON team_members FOR EACH ROW EXECUTE FUNCTION bump_generation();
CREATE TRIGGER team_permissions_generation AFTER INSERT OR UPDATE OR DELETE ON team_permissions FOR EACH ROW EXECUTE FUNCTION bump_generation();
CREATE TRIGGER repositories_generation AFTER INSERT OR UPDATE OR DELETE ON repositories FOR EACH ROW EXECUTE FUNCTION bump_generation();
CREATE TRIGGER org_settings_generation AFTER INSERT OR UPDATE OR DELETE ON org_settings FOR EACH ROW EXECUTE FUNCTION bump_generation();
CREATE TRIGGER exceptions_generation AFTER INSERT OR UPDATE OR DELETE ON exceptions FOR EACH ROW EXECUTE FUNCTION bump_generation();
CREATE TRIGGER publisher_overrides_generation AFTER INSERT OR UPDATE OR DELETE ON publisher_overrides FOR EACH ROW EXECUTE FUNCTION bump_generation();
CREATE TRIGGER signing_keys_generation AFTER INSERT OR UPDATE OR DELETE ON signing_keys FOR EACH ROW EXECUTE FUNCTION bump_generation();
