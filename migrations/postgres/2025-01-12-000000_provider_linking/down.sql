ALTER TABLE oauth_pending_logins DROP COLUMN link_session_id;
ALTER TABLE oauth_pending_logins DROP COLUMN link_user_id;
