//! Usage at scale on PostgreSQL (issue 22's figures):
//!
//! - a flush with 100,000 keys active in one hour: one `add_usage` of their
//!   counts (a row per key and one for their account, by hour and by day),
//!   timed when it inserts the rows and again when it adds to them;
//! - a year of hourly counts for 1,000 keys (8.76 million rows, written
//!   with `generate_series`), then the usage of one key for 31 days by hour,
//!   as `GET /v1/api-keys/{id}/usage` reads it, for 200 keys in turn.
//!
//! Prints the times; a database of its own is made on the server and
//! dropped at the end.
//!
//! `cargo run --release --example usage_scale -- postgres://postgres@127.0.0.1:5432/postgres`

#![allow(clippy::expect_used, clippy::unwrap_used)]

use chrono::{Duration, Utc};
use convosphere_domain::api_key::ApiKeyId;
use convosphere_domain::ports::UsageRepository;
use convosphere_domain::usage::{Granularity, UsageCounts, UsageDelta, UsageRange, UsageSubject};
use convosphere_domain::UserId;
use convosphere_store::Store;
use diesel::prelude::*;
use std::time::Instant;

mod common;
use common::{median, Database};

const FLUSH_KEYS: usize = 100_000;
const YEAR_KEYS: usize = 1_000;
const QUERIES: usize = 200;

#[tokio::main]
async fn main() {
    let server_url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let database = Database::create(&server_url);
    let store = Store::connect(&database.url).await.expect("store");
    store.migrate().await.expect("migrate");

    let user = UserId::from_uuid(uuid::Uuid::new_v4());
    let hour = Granularity::Hour.floor(Utc::now());
    let counts = UsageCounts {
        allowed: 40,
        rate_limited: 1,
        insufficient_scope: 2,
        peak_per_minute: 9,
    };
    let mut deltas: Vec<UsageDelta> = (0..FLUSH_KEYS)
        .map(|_| UsageDelta {
            user,
            key: Some(ApiKeyId::from_uuid(uuid::Uuid::new_v4())),
            hour,
            counts,
        })
        .collect();
    deltas.push(UsageDelta {
        user,
        key: None,
        hour,
        counts,
    });
    for what in ["inserting", "adding to"] {
        let started = Instant::now();
        store.add_usage(&deltas).await.expect("flush");
        println!(
            "usage flush of {FLUSH_KEYS} active keys ({what} {} hourly and {} daily rows): {:.2} s",
            deltas.len(),
            deltas.len(),
            started.elapsed().as_secs_f64()
        );
    }

    let mut conn = PgConnection::establish(&database.url).expect("connection");
    let started = Instant::now();
    let keys: Vec<ApiKeyId> = (0..YEAR_KEYS)
        .map(|_| ApiKeyId::from_uuid(uuid::Uuid::new_v4()))
        .collect();
    let year_start = hour - Duration::days(365);
    for chunk in keys.chunks(100) {
        let ids: Vec<String> = chunk.iter().map(|k| format!("'{k}'")).collect();
        diesel::sql_query(format!(
            "INSERT INTO usage_hourly SELECT '{user}', k, h, 30, 0, 1, 3 \
             FROM unnest(ARRAY[{}]) AS k, generate_series($1::timestamp, $2::timestamp, interval '1 hour') AS h",
            ids.join(",")
        ))
        .bind::<diesel::sql_types::Timestamp, _>(year_start.naive_utc())
        .bind::<diesel::sql_types::Timestamp, _>((hour - Duration::hours(1)).naive_utc())
        .execute(&mut conn)
        .expect("a year of rows");
    }
    diesel::sql_query("VACUUM ANALYZE usage_hourly")
        .execute(&mut conn)
        .expect("analyze");
    println!(
        "a year of hourly usage for {YEAR_KEYS} keys: {} rows written in {:.0} s",
        YEAR_KEYS * 365 * 24,
        started.elapsed().as_secs_f64()
    );

    let range = UsageRange {
        from: hour - Duration::days(31) + Duration::hours(1),
        to: hour + Duration::hours(1),
        granularity: Granularity::Hour,
    };
    let mut times = Vec::new();
    for key in keys.iter().cycle().take(QUERIES) {
        let started = Instant::now();
        let buckets = store.usage(UsageSubject::Key(*key), &range).await.expect("usage");
        times.push(started.elapsed());
        assert_eq!(buckets.len(), 31 * 24 - 1, "every hour but the current one is stored");
    }
    let slowest = *times.iter().max().unwrap();
    println!(
        "usage of one key, 31 days by hour, out of {} rows: median {:.2} ms, slowest {:.2} ms ({QUERIES} queries)",
        YEAR_KEYS * 365 * 24 + FLUSH_KEYS + 1,
        median(&mut times).as_secs_f64() * 1e3,
        slowest.as_secs_f64() * 1e3
    );
}
