-- Leases: which replica does a job that must happen once (filling a blob from an upstream),
-- until when. A lease past its expiry may be taken over.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
