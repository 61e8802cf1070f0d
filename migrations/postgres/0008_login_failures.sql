-- Failed sign-ins per user and per client address, in fixed windows, shared by replicas.
CREATE TABLE login_failures (
    key TEXT COLLATE "C" PRIMARY KEY,
    window_start BIGINT NOT NULL,
    failures BIGINT NOT NULL
);
