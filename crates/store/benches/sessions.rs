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

/// The integration tests' databases and values.
#[path = "../tests/it/support.rs"]
#[allow(dead_code, unused_macros)]
mod support;

use chrono::Utc;
use convosphere_domain::ports::SessionRepository;
use convosphere_domain::UserId;
use convosphere_store::Store;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use tokio::runtime::Runtime;

/// The session cap the service applies by default.
const CAP: u32 = 5;
/// Ended sessions of the user with history.
const HISTORY: usize = 5_000;

/// A new account, with an address no other has.
fn user(runtime: &Runtime, store: &Store) -> UserId {
    let email = format!("{}@example.com", uuid::Uuid::from_u128(rand::random()).simple());
    runtime.block_on(support::user(store, &email))
}

/// Opens a session of `user` now, ending the oldest beyond the cap.
fn open(runtime: &Runtime, store: &Store, user: UserId) {
    let session = support::session(user, Utc::now());
    let (refresh, event) = (support::token(), support::signed_in(&session));
    runtime
        .block_on(store.create_session(&support::new_session(&session, &refresh, CAP, &event)))
        .unwrap();
}

fn create_session(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let db = runtime.block_on(support::sqlite());
    let store = &db.store;
    let busy = user(&runtime, store);
    for _ in 0..HISTORY + CAP as usize {
        open(&runtime, store, busy);
    }

    let mut group = c.benchmark_group("create_session");
    group.bench_function("user without history", |b| {
        b.iter_batched(
            || {
                let fresh = user(&runtime, store);
                for _ in 0..CAP {
                    open(&runtime, store, fresh);
                }
                fresh
            },
            |fresh| open(&runtime, store, fresh),
            BatchSize::PerIteration,
        );
    });
    group.bench_function("user with 5,000 ended sessions", |b| {
        b.iter(|| open(&runtime, store, busy));
    });
    group.finish();
}

criterion_group!(benches, create_session);
criterion_main!(benches);
