-- Accounts an administrator (or the directory, through SCIM) has disabled: they cannot sign in
-- and their tokens are refused, but their name stays taken. Sign-in failures remember when the
-- last one happened (growing delays per user and address). An exception request keeps the
-- denial its requester saw.
ALTER TABLE users ADD COLUMN disabled BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE login_failures ADD COLUMN last_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE exception_requests ADD COLUMN denial TEXT COLLATE "C";
