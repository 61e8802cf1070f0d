-- Delegation is explicit (issue 25): a group from the identity provider makes members only of
-- the teams of organizations whose owners delegated them (`settings.directory`). Before this
-- version no organization could delegate, so every membership the directory granted was granted
-- without it: they go, and come back at the next sign-in of orgs that delegate.
DELETE FROM team_members WHERE source = 'directory';
-- One-time values already used (the hashes of OIDC sign-in states), until they expire, so a
-- replayed callback is refused on every replica.
CREATE TABLE used_once (
    key_hash TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
