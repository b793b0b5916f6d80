-- Passkeys (WebAuthn). Both backends run this file as written.

-- The passkeys of accounts. A sign-in finds its passkey by the
-- authenticator's credential id, which is registered once across accounts.
CREATE TABLE passkeys (
    id              TEXT      NOT NULL PRIMARY KEY,
    user_id         TEXT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- What its owner called it.
    name            TEXT      NOT NULL,
    -- The authenticator's credential id, base64url without padding.
    credential_id   TEXT      NOT NULL UNIQUE,
    -- The public key, algorithm, counter and flags as webauthn-rs
    -- serialises them (public data; the verifier reads it).
    credential      TEXT      NOT NULL,
    -- The last signature counter seen: it never goes back.
    sign_count      BIGINT    NOT NULL,
    backed_up       BOOLEAN   NOT NULL,
    created_at      TIMESTAMP NOT NULL,
    last_used_at    TIMESTAMP
);
CREATE INDEX passkeys_user_id_idx ON passkeys (user_id);

-- Ceremonies in flight, from start to finish, by the hash of the challenge
-- id; a row is deleted when its finish takes it (single use).
CREATE TABLE passkey_challenges (
    -- Lower-case hex SHA-256 of the challenge id.
    id_hash         TEXT      NOT NULL PRIMARY KEY,
    -- `registration` (of `user_id`'s passkey) or `sign_in`.
    purpose         TEXT      NOT NULL,
    user_id         TEXT      REFERENCES users (id) ON DELETE CASCADE,
    -- webauthn-rs's state of the ceremony (the challenge, the policy).
    state           TEXT      NOT NULL,
    expires_at      TIMESTAMP NOT NULL
);
CREATE INDEX passkey_challenges_expires_at_idx ON passkey_challenges (expires_at);
