ALTER TABLE sessions DROP COLUMN amr;
ALTER TABLE sessions DROP COLUMN auth_time;
