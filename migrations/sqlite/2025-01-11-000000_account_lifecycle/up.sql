-- The account's whole life: e-mail changes waiting for their confirmation,
-- and an audit trail that outlives a deleted account. The PostgreSQL
-- history declares the same columns with the same types.

-- A change of address asked for and not yet confirmed, by the hash of the
-- token mailed to the new address; a newer request replaces the older one.
CREATE TABLE email_changes (
    -- Lower-case hex SHA-256 of the token.
    hash            TEXT      NOT NULL PRIMARY KEY,
    user_id         TEXT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- Trimmed and lower-cased, as `users.email`.
    new_email       TEXT      NOT NULL,
    -- The session that asked: it stays when the change ends the others.
    session_id      TEXT,
    created_at      TIMESTAMP NOT NULL,
    expires_at      TIMESTAMP NOT NULL,
    used_at         TIMESTAMP
);
CREATE INDEX email_changes_user_id_idx ON email_changes (user_id);
CREATE INDEX email_changes_expires_at_idx ON email_changes (expires_at);

-- Security events are kept for AUTH_AUDIT_RETENTION after their account is
-- deleted (without the IP, user agent or details, which the deletion
-- erases): the account's row no longer holds them up. SQLite cannot drop a
-- constraint, so the table is rebuilt without it (nothing refers to it).
CREATE TABLE security_events_kept (
    id              TEXT      NOT NULL PRIMARY KEY,
    user_id         TEXT      NOT NULL,
    kind            TEXT      NOT NULL,
    at              TIMESTAMP NOT NULL,
    ip              TEXT,
    user_agent      TEXT,
    -- A JSON array of [key, value] string pairs, in order; never a secret.
    details         TEXT      NOT NULL
);
INSERT INTO security_events_kept (id, user_id, kind, at, ip, user_agent, details)
    SELECT id, user_id, kind, at, ip, user_agent, details FROM security_events;
DROP TABLE security_events;
ALTER TABLE security_events_kept RENAME TO security_events;
CREATE INDEX security_events_user_id_id_idx ON security_events (user_id, id);
CREATE INDEX security_events_at_idx ON security_events (at);
