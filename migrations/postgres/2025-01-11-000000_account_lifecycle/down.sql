DELETE FROM security_events WHERE user_id NOT IN (SELECT id FROM users);
ALTER TABLE security_events
    ADD CONSTRAINT security_events_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE;
DROP TABLE email_changes;
