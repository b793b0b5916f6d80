-- Accounts, sessions with their refresh tokens, and one-time e-mail tokens.
-- Both backends run this file as written, so one diesel schema
-- (crates/store/src/schema.rs) serves both: ids are UUID text, timestamps
-- are TIMESTAMP holding UTC, booleans BOOLEAN. PostgreSQL keeps TIMESTAMP
-- without time zone (the store writes UTC only); SQLite keeps it as
-- ISO-8601 text, which sorts like the instant.

CREATE TABLE users (
    id              TEXT      NOT NULL PRIMARY KEY,
    name            TEXT      NOT NULL,
    email           TEXT      NOT NULL,
    email_verified  BOOLEAN   NOT NULL DEFAULT FALSE,
    password_hash   TEXT,
    company         TEXT,
    country         TEXT,
    phone           TEXT,
    plan            TEXT      NOT NULL DEFAULT 'free',
    mfa_enabled     BOOLEAN   NOT NULL DEFAULT FALSE,
    suspended       BOOLEAN   NOT NULL DEFAULT FALSE,
    failed_logins   INTEGER   NOT NULL DEFAULT 0 CHECK (failed_logins >= 0),
    locked_until    TIMESTAMP,
    created_at      TIMESTAMP NOT NULL,
    updated_at      TIMESTAMP NOT NULL,
    CONSTRAINT users_email_key UNIQUE (email)
);

CREATE TABLE sessions (
    id              TEXT      NOT NULL PRIMARY KEY,
    user_id         TEXT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at      TIMESTAMP NOT NULL,
    last_active_at  TIMESTAMP NOT NULL,
    expires_at      TIMESTAMP NOT NULL,
    ended_at        TIMESTAMP,
    end_reason      TEXT,
    ip              TEXT,
    user_agent      TEXT
);
CREATE INDEX sessions_user_id_created_at_idx ON sessions (user_id, created_at);

CREATE TABLE refresh_tokens (
    hash            TEXT      NOT NULL PRIMARY KEY,
    session_id      TEXT      NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at      TIMESTAMP NOT NULL,
    used_at         TIMESTAMP
);
CREATE INDEX refresh_tokens_session_id_idx ON refresh_tokens (session_id);

CREATE TABLE one_time_tokens (
    hash            TEXT      NOT NULL PRIMARY KEY,
    user_id         TEXT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind            TEXT      NOT NULL,
    created_at      TIMESTAMP NOT NULL,
    expires_at      TIMESTAMP NOT NULL,
    used_at         TIMESTAMP
);
CREATE INDEX one_time_tokens_user_id_kind_idx ON one_time_tokens (user_id, kind);
