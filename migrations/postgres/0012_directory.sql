-- Accounts from an identity provider: where each account comes from (`local`, `oidc`, `ldap`,
-- `scim`) and the provider's stable id for it (issuer and subject), never its changeable name.
-- Team memberships the directory granted (`directory`) are kept apart from hand-made ones
-- (`manual`), so that bringing them in line with the provider's groups removes only its own.
ALTER TABLE users ADD COLUMN source TEXT COLLATE "C" NOT NULL DEFAULT 'local';
ALTER TABLE users ADD COLUMN external_id TEXT COLLATE "C";
CREATE UNIQUE INDEX users_by_external_id ON users (source, external_id) WHERE external_id IS NOT NULL;
ALTER TABLE team_members ADD COLUMN source TEXT COLLATE "C" NOT NULL DEFAULT 'manual';
-- A directory-managed team's members come only from the provider's groups: hand edits are refused.
ALTER TABLE teams ADD COLUMN directory_managed BOOLEAN NOT NULL DEFAULT FALSE;
