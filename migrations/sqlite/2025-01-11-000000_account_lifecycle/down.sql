CREATE TABLE security_events_owned (
    id              TEXT      NOT NULL PRIMARY KEY,
    user_id         TEXT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind            TEXT      NOT NULL,
    at              TIMESTAMP NOT NULL,
    ip              TEXT,
    user_agent      TEXT,
    details         TEXT      NOT NULL
);
INSERT INTO security_events_owned (id, user_id, kind, at, ip, user_agent, details)
    SELECT id, user_id, kind, at, ip, user_agent, details FROM security_events
    WHERE user_id IN (SELECT id FROM users);
DROP TABLE security_events;
ALTER TABLE security_events_owned RENAME TO security_events;
CREATE INDEX security_events_user_id_id_idx ON security_events (user_id, id);
CREATE INDEX security_events_at_idx ON security_events (at);
DROP TABLE email_changes;
