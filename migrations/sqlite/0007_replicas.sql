-- Replicas: token signing keys shared through the database (the newest signs, all verify), and
-- a generation number that every change to what replicas keep in memory (users, orgs, teams,
-- permissions, repositories, settings, exceptions, publishers, keys) increases, by trigger.
-- Each replica polls it and reloads when it moves.
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    pkcs8 BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE generation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT INTO generation (id, value) VALUES (1, 0);
CREATE TRIGGER users_insert_generation AFTER INSERT ON users BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER users_update_generation AFTER UPDATE ON users BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER users_delete_generation AFTER DELETE ON users BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER orgs_insert_generation AFTER INSERT ON orgs BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER orgs_update_generation AFTER UPDATE ON orgs BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER orgs_delete_generation AFTER DELETE ON orgs BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER teams_insert_generation AFTER INSERT ON teams BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER teams_update_generation AFTER UPDATE ON teams BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER teams_delete_generation AFTER DELETE ON teams BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER team_members_insert_generation AFTER INSERT ON team_members BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER team_members_update_generation AFTER UPDATE ON team_members BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER team_members_delete_generation AFTER DELETE ON team_members BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER team_permissions_insert_generation AFTER INSERT ON team_permissions BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER team_permissions_update_generation AFTER UPDATE ON team_permissions BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER team_permissions_delete_generation AFTER DELETE ON team_permissions BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER repositories_insert_generation AFTER INSERT ON repositories BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER repositories_update_generation AFTER UPDATE ON repositories BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER repositories_delete_generation AFTER DELETE ON repositories BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER org_settings_insert_generation AFTER INSERT ON org_settings BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER org_settings_update_generation AFTER UPDATE ON org_settings BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER org_settings_delete_generation AFTER DELETE ON org_settings BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER exceptions_insert_generation AFTER INSERT ON exceptions BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER exceptions_update_generation AFTER UPDATE ON exceptions BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER exceptions_delete_generation AFTER DELETE ON exceptions BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER publisher_overrides_insert_generation AFTER INSERT ON publisher_overrides BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER publisher_overrides_update_generation AFTER UPDATE ON publisher_overrides BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER publisher_overrides_delete_generation AFTER DELETE ON publisher_overrides BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER signing_keys_insert_generation AFTER INSERT ON signing_keys BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER signing_keys_update_generation AFTER UPDATE ON signing_keys BEGIN UPDATE generation SET value = value + 1; END;
CREATE TRIGGER signing_keys_delete_generation AFTER DELETE ON signing_keys BEGIN UPDATE generation SET value = value + 1; END;
