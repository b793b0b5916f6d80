-- API keys, and the invalidation feed that tells every instance's caches
-- what to forget. The PostgreSQL history declares the same columns with the
-- same types (the auto-increment id is spelled differently, but both are
-- 64-bit integers to diesel: `BigInt`).

CREATE TABLE api_keys (
    id              TEXT      NOT NULL PRIMARY KEY,
    user_id         TEXT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name            TEXT      NOT NULL,
    -- The 8 base62 characters after `cs_`, by which a presented key is found.
    public_id       TEXT      NOT NULL,
    -- Lower-case hex SHA-256 of the secret part.
    secret_hash     TEXT      NOT NULL,
    -- Space-separated, in the documented order (`ScopeSet`'s Display).
    scopes          TEXT      NOT NULL,
    created_at      TIMESTAMP NOT NULL,
    expires_at      TIMESTAMP,
    last_used_at    TIMESTAMP,
    revoked_at      TIMESTAMP,
    CONSTRAINT api_keys_public_id_key UNIQUE (public_id)
);
-- A user's keys, newest first.
CREATE INDEX api_keys_user_id_created_at_idx ON api_keys (user_id, created_at);

-- Appended in the same transaction as each change that caches must learn
-- of; read by id. SQLite runs writers one at a time, so ids become visible
-- in increasing order; AUTOINCREMENT never hands out an id twice, even
-- after the newest rows are deleted.
CREATE TABLE invalidations (
    id              INTEGER   NOT NULL PRIMARY KEY AUTOINCREMENT,
    kind            TEXT      NOT NULL CHECK (kind IN ('session', 'user', 'api_key')),
    -- A session id, a user id, or an API key's public id.
    subject         TEXT      NOT NULL,
    created_at      TIMESTAMP NOT NULL
);
