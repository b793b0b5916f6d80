-- Logins refused for an address that has no account: when and from where,
-- never the address. Written by the same transaction as an account's
-- refused login, so that the two cost the same; purged with the audit trail.
CREATE TABLE unknown_login_attempts (
    id              INTEGER   NOT NULL PRIMARY KEY AUTOINCREMENT,
    at              TIMESTAMP NOT NULL,
    ip              TEXT,
    user_agent      TEXT
);
CREATE INDEX unknown_login_attempts_at_idx ON unknown_login_attempts (at);
