-- Linking a provider while signed in: the authorization in flight names the
-- account it is for and the session that asked (both NULL for a login).
ALTER TABLE oauth_pending_logins ADD COLUMN link_user_id TEXT REFERENCES users (id) ON DELETE CASCADE;
ALTER TABLE oauth_pending_logins ADD COLUMN link_session_id TEXT;
