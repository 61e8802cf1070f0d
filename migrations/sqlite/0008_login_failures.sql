-- Failed sign-ins per user and per client address, in fixed windows, shared by replicas.
CREATE TABLE login_failures (
    key TEXT PRIMARY KEY,
    window_start INTEGER NOT NULL,
    failures INTEGER NOT NULL
);
