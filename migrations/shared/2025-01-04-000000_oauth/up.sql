-- OAuth login (Google, GitHub, Facebook). Both backends run this file as
-- written.

-- Provider identities linked to accounts: a provider's user is found by
-- (provider, subject), never by e-mail address.
CREATE TABLE oauth_identities (
    -- `google`, `github` or `facebook`.
    provider        TEXT      NOT NULL,
    -- The provider's stable id of the person (OIDC `sub`, GitHub's user id…).
    subject         TEXT      NOT NULL,
    user_id         TEXT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The verified address it came with when it was linked (informational).
    email           TEXT      NOT NULL,
    created_at      TIMESTAMP NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX oauth_identities_user_id_idx ON oauth_identities (user_id);

-- Authorizations in flight, from `start` to `callback`, keyed by the hash
-- of `state`; a row is deleted when the callback takes it (single use).
CREATE TABLE oauth_pending_logins (
    -- Lower-case hex SHA-256 of `state`.
    state_hash      TEXT      NOT NULL PRIMARY KEY,
    provider        TEXT      NOT NULL,
    -- Lower-case hex SHA-256 of the browser-binding cookie.
    browser_hash    TEXT      NOT NULL,
    -- The PKCE code verifier, XChaCha20-Poly1305 under AUTH_SECRET_KEY_FILE.
    sealed_verifier TEXT      NOT NULL,
    nonce           TEXT      NOT NULL,
    -- Where to send the browser afterwards (checked at `start`); NULL: the dashboard.
    redirect_to     TEXT,
    created_at      TIMESTAMP NOT NULL,
    expires_at      TIMESTAMP NOT NULL
);
CREATE INDEX oauth_pending_logins_expires_at_idx ON oauth_pending_logins (expires_at);

-- The one-time codes that the callback hands the client for
-- `POST /v1/auth/oauth/exchange`, by hash.
CREATE TABLE oauth_login_codes (
    -- Lower-case hex SHA-256 of the code.
    hash            TEXT      NOT NULL PRIMARY KEY,
    user_id         TEXT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider        TEXT      NOT NULL,
    created_at      TIMESTAMP NOT NULL,
    expires_at      TIMESTAMP NOT NULL,
    used_at         TIMESTAMP
);
CREATE INDEX oauth_login_codes_expires_at_idx ON oauth_login_codes (expires_at);
