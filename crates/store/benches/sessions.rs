//! What opening a session costs in the store (a login's writes), for a
//! user without history against a user with 5,000 ended sessions: ended
//! sessions are kept a day, so a script that logs in often leaves that many.
//! Both users have as many live sessions as the cap allows, so each opening
//! ends the oldest. The two should cost the same: a login reads only the
//! user's live sessions.
//!
//! `cargo bench -p convosphere-store` (SQLite, a file in a temporary
//! directory, as the service runs by default).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, Utc};
use convosphere_domain::ports::{SessionRepository, UserRepository};
use convosphere_domain::{Email, NewUser, Plan, Session, SessionId, TokenHash, UserId};
use convosphere_store::Store;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use tokio::runtime::Runtime;

/// The session cap the service applies by default.
const CAP: u32 = 5;
/// Ended sessions of the user with history.
const HISTORY: usize = 5_000;

fn uuid() -> uuid::Uuid {
    uuid::Uuid::from_u128(rand::random())
}

fn user(runtime: &Runtime, store: &Store) -> UserId {
    let new = NewUser {
        id: UserId::from_uuid(uuid()),
        name: "Bench".into(),
        email: Email::parse(&format!("{}@example.com", uuid().simple())).unwrap(),
        email_verified: true,
        password_hash: None,
        company: None,
        country: None,
        phone: None,
        plan: Plan::Free,
        created_at: Utc::now(),
    };
    runtime.block_on(store.create_user(&new)).unwrap().id
}

/// Opens a session of `user` now, ending the oldest beyond the cap.
fn open(runtime: &Runtime, store: &Store, user: UserId) {
    let now: DateTime<Utc> = Utc::now();
    let session = Session {
        id: SessionId::from_uuid(uuid()),
        user_id: user,
        created_at: now,
        last_active_at: now,
        expires_at: now + Duration::days(7),
        ended_at: None,
        end_reason: None,
        ip: None,
        user_agent: None,
    };
    let refresh = TokenHash(rand::random());
    runtime
        .block_on(store.create_session(&session, &refresh, CAP, now - Duration::hours(24)))
        .unwrap();
}

fn create_session(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("auth.db").display());
    let store = runtime.block_on(Store::connect(&url)).unwrap();
    runtime.block_on(store.migrate()).unwrap();
    let busy = user(&runtime, &store);
    for _ in 0..HISTORY + CAP as usize {
        open(&runtime, &store, busy);
    }

    let mut group = c.benchmark_group("create_session");
    group.bench_function("user without history", |b| {
        b.iter_batched(
            || {
                let fresh = user(&runtime, &store);
                for _ in 0..CAP {
                    open(&runtime, &store, fresh);
                }
                fresh
            },
            |fresh| open(&runtime, &store, fresh),
            BatchSize::PerIteration,
        );
    });
    group.bench_function("user with 5,000 ended sessions", |b| {
        b.iter(|| open(&runtime, &store, busy));
    });
    group.finish();
}

criterion_group!(benches, create_session);
criterion_main!(benches);
