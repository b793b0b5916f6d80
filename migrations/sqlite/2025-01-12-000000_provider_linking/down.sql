-- SQLite cannot drop a column with a foreign key: the authorizations in
-- flight (ten minutes' worth) are dropped with the table.
DROP TABLE oauth_pending_logins;
CREATE TABLE oauth_pending_logins (
    state_hash      TEXT      NOT NULL PRIMARY KEY,
    provider        TEXT      NOT NULL,
    browser_hash    TEXT      NOT NULL,
    sealed_verifier TEXT      NOT NULL,
    nonce           TEXT      NOT NULL,
    redirect_to     TEXT,
    created_at      TIMESTAMP NOT NULL,
    expires_at      TIMESTAMP NOT NULL
);
CREATE INDEX oauth_pending_logins_expires_at_idx ON oauth_pending_logins (expires_at);
