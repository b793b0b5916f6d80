-- When a login last used each provider identity (shown to its owner).
ALTER TABLE oauth_identities ADD COLUMN last_used_at TIMESTAMP;
