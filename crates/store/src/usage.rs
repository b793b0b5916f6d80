//! [`UsageRepository`] for [`Store`]: usage counts by hour and day, the
//! networks keys were used from, and the day's unusual-use e-mails.
//!
//! Every write adds or is idempotent: `ON CONFLICT … DO UPDATE SET allowed
//! = allowed + excluded.allowed` for counts, `ON CONFLICT DO NOTHING` for a
//! claimed e-mail, so that instances flushing at once add up exactly.

use crate::connection::{with_conn, Dialect};
use crate::models::db_time;
use crate::schema::{key_networks, usage_alerts, usage_daily, usage_hourly};
use crate::Store;
use chrono::{DateTime, NaiveDateTime, Utc};
use convosphere_domain::api_key::ApiKeyId;
use convosphere_domain::ports::UsageRepository;
use convosphere_domain::usage::{
    Granularity, KeyNetworkUse, UsageBucket, UsageCounts, UsageDelta, UsageRange, UsageSubject,
};
use convosphere_domain::{EventKind, InfraError};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel::upsert::excluded;
use std::collections::BTreeMap;

/// The most networks kept per key (the most recently used).
pub const NETWORKS_PER_KEY: i64 = 200;

/// Rows of one upsert statement (7 parameters each, far below either
/// backend's limit).
const ROWS_PER_STATEMENT: usize = 500;

/// The `api_key_id` of an account's own row: every key and session.
const WHOLE_ACCOUNT: &str = "";

/// A stored bucket: its start and counts.
type BucketRow = (NaiveDateTime, i64, i64, i64, i64);

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn counts(row: BucketRow) -> UsageBucket {
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    UsageBucket {
        start: row.0.and_utc(),
        counts: UsageCounts {
            allowed: n(row.1),
            rate_limited: n(row.2),
            insufficient_scope: n(row.3),
            peak_per_minute: n(row.4),
        },
    }
}

/// The deltas summed per row and bucket, in key order: two instances
/// flushing at once lock rows in the same order and cannot deadlock.
fn by_row(deltas: &[UsageDelta], granularity: Granularity) -> BTreeMap<(String, String, NaiveDateTime), UsageCounts> {
    let mut rows: BTreeMap<_, UsageCounts> = BTreeMap::new();
    for delta in deltas {
        let key = delta
            .key
            .map_or_else(|| WHOLE_ACCOUNT.to_owned(), |key| key.to_string());
        let start = db_time(granularity.floor(delta.hour));
        rows.entry((delta.user.to_string(), key, start))
            .or_default()
            .merge(&delta.counts);
    }
    rows
}

/// Adds rows to a usage table (`usage_hourly` or `usage_daily`, bucket
/// column `hour` or `day`). A macro: the two tables and the connection
/// types differ, the statement does not.
macro_rules! add_rows {
    ($conn:expr, $table:ident, $bucket:ident, $rows:expr) => {{
        let greatest = sql::<BigInt>(&format!(
            "{}({}.peak_per_minute, excluded.peak_per_minute)",
            greatest_of($conn),
            stringify!($table)
        ));
        let values: Vec<_> = $rows
            .iter()
            .map(|((user, key, start), c)| {
                (
                    $table::user_id.eq(user),
                    $table::api_key_id.eq(key),
                    $table::$bucket.eq(*start),
                    $table::allowed.eq(count(c.allowed)),
                    $table::rate_limited.eq(count(c.rate_limited)),
                    $table::insufficient_scope.eq(count(c.insufficient_scope)),
                    $table::peak_per_minute.eq(count(c.peak_per_minute)),
                )
            })
            .collect();
        for chunk in values.chunks(ROWS_PER_STATEMENT) {
            diesel::insert_into($table::table)
                .values(chunk)
                .on_conflict(($table::user_id, $table::api_key_id, $table::$bucket))
                .do_update()
                .set((
                    $table::allowed.eq($table::allowed + excluded($table::allowed)),
                    $table::rate_limited.eq($table::rate_limited + excluded($table::rate_limited)),
                    $table::insufficient_scope.eq($table::insufficient_scope + excluded($table::insufficient_scope)),
                    $table::peak_per_minute.eq(greatest.clone()),
                ))
                .execute($conn)?;
        }
    }};
}

fn greatest_of<C: Dialect>(_: &C) -> &'static str {
    C::GREATEST
}

/// Reads the buckets of a usage table. A macro for the same reasons.
macro_rules! read_rows {
    ($conn:expr, $table:ident, $bucket:ident, $subject:expr, $from:expr, $to:expr) => {{
        let in_range = $table::$bucket.ge($from).and($table::$bucket.lt($to));
        let select = (
            $table::$bucket,
            $table::allowed,
            $table::rate_limited,
            $table::insufficient_scope,
            $table::peak_per_minute,
        );
        match $subject {
            Subject::Account(user) => $table::table
                .filter($table::user_id.eq(user))
                .filter($table::api_key_id.eq(WHOLE_ACCOUNT))
                .filter(in_range)
                .order($table::$bucket)
                .select(select)
                .load::<BucketRow>($conn)?,
            Subject::Key(key) => $table::table
                .filter($table::api_key_id.eq(key))
                .filter(in_range)
                .order($table::$bucket)
                .select(select)
                .load::<BucketRow>($conn)?,
        }
    }};
}

/// [`UsageSubject`] as stored text.
enum Subject {
    Account(String),
    Key(String),
}

impl UsageRepository for Store {
    async fn add_usage(&self, deltas: &[UsageDelta]) -> Result<(), InfraError> {
        let (hours, days) = (by_row(deltas, Granularity::Hour), by_row(deltas, Granularity::Day));
        if hours.is_empty() {
            return Ok(());
        }
        let users: Vec<String> = hours.keys().map(|(user, _, _)| user.clone()).collect();
        with_conn!(self, |conn| conn.write_transaction(|conn| {
            // Counts of an account deleted meanwhile are dropped, not kept
            // as rows that nothing would ever delete.
            let mut users = users;
            users.dedup();
            let live = conn.existing_users(&users)?;
            let (mut hours, mut days) = (hours, days);
            if live.len() < users.len() {
                hours.retain(|(user, _, _), _| live.contains(user));
                days.retain(|(user, _, _), _| live.contains(user));
            }
            add_rows!(conn, usage_hourly, hour, hours);
            add_rows!(conn, usage_daily, day, days);
            Ok(())
        }))?;
        Ok(())
    }

    async fn usage(&self, subject: UsageSubject, range: &UsageRange) -> Result<Vec<UsageBucket>, InfraError> {
        let subject = match subject {
            UsageSubject::Account(user) => Subject::Account(user.to_string()),
            UsageSubject::Key(key) => Subject::Key(key.to_string()),
        };
        let (from, to, granularity) = (db_time(range.from), db_time(range.to), range.granularity);
        let rows: Vec<BucketRow> = with_conn!(self, |conn| Ok(match granularity {
            Granularity::Hour => read_rows!(conn, usage_hourly, hour, &subject, from, to),
            Granularity::Day => read_rows!(conn, usage_daily, day, &subject, from, to),
        }))?;
        Ok(rows.into_iter().map(counts).collect())
    }

    async fn note_key_network(
        &self,
        key: ApiKeyId,
        network: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, InfraError> {
        let (key, network, at) = (key.to_string(), network.to_owned(), db_time(at));
        let last: Option<NaiveDateTime> = with_conn!(self, |conn| conn.write_transaction(|conn| {
            if !conn.api_key_exists(&key)? {
                // Deleted with its account meanwhile: nothing to note, nothing new.
                return Ok(Some(at));
            }
            let target = key_networks::table.find((&key, &network));
            let last = target
                .select(key_networks::last_seen)
                .first::<NaiveDateTime>(conn)
                .optional()?;
            diesel::insert_into(key_networks::table)
                .values((
                    key_networks::api_key_id.eq(&key),
                    key_networks::network.eq(&network),
                    key_networks::first_seen.eq(at),
                    key_networks::last_seen.eq(at),
                ))
                .on_conflict((key_networks::api_key_id, key_networks::network))
                .do_update()
                .set(key_networks::last_seen.eq(at))
                .execute(conn)?;
            if last.is_none() {
                // A key keeps its most recently used networks only.
                let kept = key_networks::table
                    .filter(key_networks::api_key_id.eq(&key))
                    .order(key_networks::last_seen.desc())
                    .select(key_networks::network)
                    .limit(NETWORKS_PER_KEY);
                diesel::delete(
                    key_networks::table
                        .filter(key_networks::api_key_id.eq(&key))
                        .filter(key_networks::network.ne_all(kept.load::<String>(conn)?)),
                )
                .execute(conn)?;
            }
            Ok(last)
        }))?;
        Ok(last.map(|at| at.and_utc()))
    }

    async fn key_networks(&self, key: ApiKeyId) -> Result<Vec<KeyNetworkUse>, InfraError> {
        let key = key.to_string();
        let rows: Vec<(String, NaiveDateTime, NaiveDateTime)> = with_conn!(self, |conn| Ok(key_networks::table
            .filter(key_networks::api_key_id.eq(key))
            .order(key_networks::last_seen.desc())
            .select((key_networks::network, key_networks::first_seen, key_networks::last_seen))
            .load(conn)?))?;
        Ok(rows
            .into_iter()
            .map(|(network, first, last)| KeyNetworkUse {
                network,
                first_seen: first.and_utc(),
                last_seen: last.and_utc(),
            })
            .collect())
    }

    async fn claim_usage_alert(&self, key: ApiKeyId, kind: EventKind, at: DateTime<Utc>) -> Result<bool, InfraError> {
        let (key, day) = (key.to_string(), db_time(Granularity::Day.floor(at)));
        let claimed = with_conn!(self, |conn| conn.write_transaction(|conn| {
            if !conn.api_key_exists(&key)? {
                return Ok(0);
            }
            Ok(diesel::insert_into(usage_alerts::table)
                .values((
                    usage_alerts::api_key_id.eq(&key),
                    usage_alerts::kind.eq(kind.as_str()),
                    usage_alerts::day.eq(day),
                ))
                .on_conflict_do_nothing()
                .execute(conn)?)
        }))?;
        Ok(claimed == 1)
    }

    async fn prune_usage(&self, before: DateTime<Utc>) -> Result<u64, InfraError> {
        let before = db_time(before);
        let gone = with_conn!(self, |conn| conn.write(|conn| {
            Ok(
                diesel::delete(usage_hourly::table.filter(usage_hourly::hour.lt(before))).execute(conn)?
                    + diesel::delete(usage_daily::table.filter(usage_daily::day.lt(before))).execute(conn)?
                    + diesel::delete(key_networks::table.filter(key_networks::last_seen.lt(before))).execute(conn)?
                    + diesel::delete(usage_alerts::table.filter(usage_alerts::day.lt(before))).execute(conn)?,
            )
        }))?;
        Ok(gone as u64)
    }
}
