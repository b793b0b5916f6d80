-- The recent-sign-in rule reads when a session last proved who its holder
-- is (sign-in or re-authentication) and how: `auth_time` and `amr` of its
-- access tokens. A session from before counts from its login.
ALTER TABLE sessions ADD COLUMN auth_time TIMESTAMP NOT NULL DEFAULT '1970-01-01 00:00:00';
ALTER TABLE sessions ADD COLUMN amr TEXT NOT NULL DEFAULT '';
UPDATE sessions SET auth_time = created_at;
