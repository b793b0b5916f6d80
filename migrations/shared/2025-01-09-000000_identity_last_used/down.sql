ALTER TABLE oauth_identities DROP COLUMN last_used_at;
