DROP TABLE oauth_login_codes;
DROP TABLE oauth_pending_logins;
DROP TABLE oauth_identities;
