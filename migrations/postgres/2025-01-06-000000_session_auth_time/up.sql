-- The recent-sign-in rule reads when a session last proved who its holder
-- is (sign-in or re-authentication) and how: `auth_time` and `amr` of its
-- access tokens. A session from before counts from its login.
ALTER TABLE sessions ADD COLUMN auth_time TIMESTAMP;
UPDATE sessions SET auth_time = created_at;
ALTER TABLE sessions ALTER COLUMN auth_time SET NOT NULL;
ALTER TABLE sessions ADD COLUMN amr TEXT NOT NULL DEFAULT '';
