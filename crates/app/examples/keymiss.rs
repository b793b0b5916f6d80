//! The API key cache-miss path against a plain primary-key lookup on the
//! same PostgreSQL.
//!
//! On a fresh database (created on the server of the URL, dropped at the
//! end) it creates one account and N API keys, then, for each key in turn:
//!
//! - authenticates the key through the production wiring
//!   (`AppState`: the caches in front of the store, the store's pool and
//!   blocking threads), so every key is a cache miss that reads its row from
//!   the database (the owner is read once and then cached, as in the steady
//!   state of a gateway);
//! - reads the same key's row by primary key
//!   (`SELECT … FROM api_keys WHERE id = $1`) on one plain diesel connection;
//! - reads it by id through the store (`ApiKeyRepository::api_key`: its
//!   pool, with the check of each connection on checkout, and a blocking
//!   thread), which splits the difference between the first two into the
//!   store's share and the rest;
//! - authenticates the key again (now a cache hit).
//!
//! Prints the median time of each and the ratio of the first to the second.
//!
//! `cargo run --release --example keymiss -- postgres://postgres@127.0.0.1:5432/postgres 1000`

#![allow(clippy::expect_used, clippy::unwrap_used)]

use chrono::NaiveDateTime;
use convosphere_auth::state::{open_store, AppState};
use convosphere_auth::Config;
use convosphere_domain::api_key::ApiKeyId;
use convosphere_domain::auth::SignupRequest;
use convosphere_domain::ports::{ApiKeyRepository, UserRepository};
use convosphere_domain::Email;
use convosphere_domain::SecretString;
use diesel::prelude::*;
use secrecy::ExposeSecret;
use std::time::{Duration, Instant};

mod common;
use common::Database;

/// The one table read here, declared as the store crate declares it.
#[allow(missing_docs)]
mod schema {
    diesel::table! {
        api_keys (id) {
            id -> Text,
            user_id -> Text,
            name -> Text,
            public_id -> Text,
            secret_hash -> Text,
            scopes -> Text,
            created_at -> Timestamp,
            expires_at -> Nullable<Timestamp>,
            last_used_at -> Nullable<Timestamp>,
            revoked_at -> Nullable<Timestamp>,
        }
    }
}
use schema::api_keys;

type KeyRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    NaiveDateTime,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
);

/// Keys used only to warm up (connections, code paths).
const WARM_UP: usize = 50;

#[tokio::main]
async fn main() {
    let server_url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let n: usize = std::env::args().nth(2).map_or(1000, |n| n.parse().expect("N"));
    let database = Database::create(&server_url);
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = Config::from_sources(
        None,
        [
            ("AUTH_DATA_DIR", dir.path().display().to_string()),
            ("AUTH_DATABASE_URL", database.url.clone()),
            ("AUTH_LOG_FORMAT", "json".into()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    )
    .expect("configuration");
    let store = open_store(&config).await.expect("store");
    store.migrate().await.expect("migrate");
    let state = AppState::build(config, store).await.expect("state");

    let email = "keymiss@example.com";
    state
        .auth
        .signup(SignupRequest {
            name: "Bench".into(),
            email: email.into(),
            password: SecretString::from("correct horse battery staple"),
            ..SignupRequest::default()
        })
        .await
        .expect("signup");
    let user = state
        .store
        .user_by_email(&Email::parse(email).unwrap())
        .await
        .unwrap()
        .expect("the account");
    // Keys are made by a signed-in user, as on the keys page.
    let none = convosphere_domain::ClientContext::default();
    let session = state.auth.open_session(
        user.clone(),
        vec![convosphere_domain::AuthMethod::Password],
        "password",
        &none,
    );
    let access = session.await.expect("session").access_token;
    let Ok(convosphere_domain::Caller::User(principal)) = state.auth.authenticate(&access).await else {
        panic!("the session's access token is refused")
    };
    let mut keys = Vec::with_capacity(n + WARM_UP);
    for i in 0..n + WARM_UP {
        let created = state
            .auth
            .create_api_key(
                &principal,
                &format!("key {i}"),
                &["agents:read".into()],
                None,
                &convosphere_domain::ClientContext::default(),
            )
            .await
            .expect("create key");
        keys.push((created.key.expose_secret().to_owned(), created.record.id));
    }
    let mut conn = PgConnection::establish(&database.url).expect("connection");
    let by_id = |conn: &mut PgConnection, id: &ApiKeyId| {
        api_keys::table
            .find(id.to_string())
            .first::<KeyRow>(conn)
            .expect("row by id");
    };
    let store = &state.store;

    let (warm, measured) = keys.split_at(WARM_UP);
    for (key, id) in warm {
        state.auth.authenticate(key).await.expect("warm-up key");
        by_id(&mut conn, id);
        store.api_key(user.id, *id).await.expect("read").expect("the key");
    }
    // Key by key, the three reads one after the other, so that a noisy
    // neighbour slows all three alike; medians, which a few stalls do not move.
    let (mut miss, mut pk, mut through_store, mut hit) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (key, id) in measured {
        let started = Instant::now();
        state.auth.authenticate(key).await.expect("key");
        miss.push(started.elapsed());
        let started = Instant::now();
        by_id(&mut conn, id);
        pk.push(started.elapsed());
        let started = Instant::now();
        store.api_key(user.id, *id).await.expect("read").expect("the key");
        through_store.push(started.elapsed());
        let started = Instant::now();
        state.auth.authenticate(key).await.expect("key");
        hit.push(started.elapsed());
    }
    let median = |times: &mut Vec<Duration>| common::median(times).as_secs_f64() * 1e6;
    let mean = |times: &[Duration]| times.iter().sum::<Duration>().as_secs_f64() * 1e6 / times.len() as f64;
    let (miss_mean, pk_mean) = (mean(&miss), mean(&pk));
    let (miss, pk, through_store, hit) = (
        median(&mut miss),
        median(&mut pk),
        median(&mut through_store),
        median(&mut hit),
    );
    println!(
        "API key cache miss (row read from PostgreSQL): {miss:.1} µs; primary-key SELECT on one connection: {pk:.1} µs; ratio {:.2} (medians of {} keys; means {miss_mean:.1} and {pk_mean:.1} µs; the same read by id through the store's pool: {through_store:.1} µs; cache hit {hit:.1} µs)",
        miss / pk,
        measured.len(),
    );
    drop(state);
}
