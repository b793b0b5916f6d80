-- The live sessions of a user (`ended_at IS NULL`) are read at every login
-- (to end those beyond the cap), by the session list and by "log out
-- everywhere". Indexed by (user_id, created_at) alone, such a query walked
-- every session the user ever had until the purge (ended ones are kept a
-- day), so a login grew slower with the user's history. With ended_at in
-- the index it reads only the live ones; user_id first still serves the
-- cascade from users.
DROP INDEX sessions_user_id_created_at_idx;
CREATE INDEX sessions_user_id_ended_at_created_at_idx ON sessions (user_id, ended_at, created_at);
