-- TOTP two-factor authentication and the audit trail. Both backends run
-- this file as written.

-- One TOTP enrolment per user: unconfirmed while being set up, confirmed
-- when 2FA is on (`users.mfa_enabled` mirrors that, in the same transaction).
CREATE TABLE totp_secrets (
    user_id         TEXT      NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    -- XChaCha20-Poly1305 under AUTH_SECRET_KEY_FILE: base64(nonce || ciphertext).
    sealed_secret   TEXT      NOT NULL,
    confirmed       BOOLEAN   NOT NULL DEFAULT FALSE,
    -- The last accepted step: a code of this step or an earlier one is refused.
    last_step       BIGINT,
    created_at      TIMESTAMP NOT NULL
);

-- Single-use recovery codes, by hash.
CREATE TABLE recovery_codes (
    hash            TEXT      NOT NULL PRIMARY KEY,
    user_id         TEXT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at      TIMESTAMP NOT NULL,
    used_at         TIMESTAMP
);
CREATE INDEX recovery_codes_user_id_idx ON recovery_codes (user_id);

-- The audit trail. Ids are time-ordered UUIDs: a user's events sort by id.
CREATE TABLE security_events (
    id              TEXT      NOT NULL PRIMARY KEY,
    user_id         TEXT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind            TEXT      NOT NULL,
    at              TIMESTAMP NOT NULL,
    ip              TEXT,
    user_agent      TEXT,
    -- A JSON array of [key, value] string pairs, in order; never a secret.
    details         TEXT      NOT NULL
);
CREATE INDEX security_events_user_id_id_idx ON security_events (user_id, id);
CREATE INDEX security_events_at_idx ON security_events (at);
