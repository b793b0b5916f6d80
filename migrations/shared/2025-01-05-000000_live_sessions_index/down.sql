DROP INDEX sessions_user_id_ended_at_created_at_idx;
CREATE INDEX sessions_user_id_created_at_idx ON sessions (user_id, created_at);
