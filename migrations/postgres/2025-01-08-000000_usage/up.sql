-- Where each key was last used from (written with last_used_at).
ALTER TABLE api_keys ADD COLUMN last_used_ip TEXT;
ALTER TABLE api_keys ADD COLUMN last_used_user_agent TEXT;

-- What the gateway answered, by hour and by day (UTC). One row per key and
-- bucket, and one per account and bucket with api_key_id '' (every key and
-- session of the account). Instances add to them (ON CONFLICT … DO UPDATE
-- SET allowed = allowed + excluded.allowed), so their counts add up.
CREATE TABLE usage_hourly (
    user_id             TEXT      NOT NULL,
    api_key_id          TEXT      NOT NULL,
    hour                TIMESTAMP NOT NULL,
    allowed             BIGINT    NOT NULL,
    rate_limited        BIGINT    NOT NULL,
    insufficient_scope  BIGINT    NOT NULL,
    peak_per_minute     BIGINT    NOT NULL,
    PRIMARY KEY (user_id, api_key_id, hour)
);
-- Room on each page for a row's next version: adding to a bucket is then a
-- HOT update that leaves the indexes alone.
ALTER TABLE usage_hourly SET (fillfactor = 70);
CREATE INDEX usage_hourly_key_idx ON usage_hourly (api_key_id, hour);
CREATE TABLE usage_daily (
    user_id             TEXT      NOT NULL,
    api_key_id          TEXT      NOT NULL,
    day                 TIMESTAMP NOT NULL,
    allowed             BIGINT    NOT NULL,
    rate_limited        BIGINT    NOT NULL,
    insufficient_scope  BIGINT    NOT NULL,
    peak_per_minute     BIGINT    NOT NULL,
    PRIMARY KEY (user_id, api_key_id, day)
);
ALTER TABLE usage_daily SET (fillfactor = 70);
CREATE INDEX usage_daily_key_idx ON usage_daily (api_key_id, day);

-- The client networks (/24, /48) each key was used from lately.
CREATE TABLE key_networks (
    api_key_id          TEXT      NOT NULL,
    network             TEXT      NOT NULL,
    first_seen          TIMESTAMP NOT NULL,
    last_seen           TIMESTAMP NOT NULL,
    PRIMARY KEY (api_key_id, network)
);
CREATE INDEX key_networks_last_seen_idx ON key_networks (last_seen);

-- The e-mails about unusual use sent: one per key, kind and day.
CREATE TABLE usage_alerts (
    api_key_id          TEXT      NOT NULL,
    kind                TEXT      NOT NULL,
    day                 TIMESTAMP NOT NULL,
    PRIMARY KEY (api_key_id, kind, day)
);
