//! The invalidation feed: what each change announces, and the cursor.

use crate::support::{api_key, in_parallel, minutes, session, t0, token, user, TestDb};
use chrono::{Duration, Utc};
use convosphere_domain::ports::{
    ApiKeyRepository, Invalidation, InvalidationFeed, RefreshOutcome, SessionRepository, UserRepository,
};
use convosphere_domain::{EndReason, Plan, SessionId, UserId};
use convosphere_store::{Backend, Purged, INVALIDATION_LOCK_KEY};
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, SqliteConnection};

on_both_backends!(
    the_feed_starts_empty,
    ended_sessions_are_announced_once_each,
    refresh_token_reuse_is_announced,
    evicted_sessions_are_announced,
    plan_and_suspension_changes_are_announced,
    key_revocation_and_rotation_are_announced,
    the_cursor_moves_past_what_was_read,
    parallel_changes_all_reach_a_polling_reader,
    an_uncommitted_append_holds_back_the_ones_after_it,
    old_invalidations_are_purged_and_ids_never_reused,
);

const CAP: u32 = 5;

/// What was announced after `cursor`, and the new cursor.
async fn since(db: &TestDb, cursor: i64) -> (i64, Vec<Invalidation>) {
    db.store.invalidations_since(cursor).await.unwrap()
}

/// What was announced after `cursor`; moves `cursor` on.
async fn read(db: &TestDb, cursor: &mut i64) -> Vec<Invalidation> {
    let (next, invalidations) = since(db, *cursor).await;
    assert!(next >= *cursor);
    *cursor = next;
    invalidations
}

async fn the_feed_starts_empty(db: TestDb) {
    assert_eq!(db.store.latest_invalidation().await.unwrap(), 0);
    assert_eq!(since(&db, 0).await, (0, vec![]));
    // Creating things announces nothing: no cache can hold what did not exist.
    let ada = user(&db.store, "ada@example.com").await;
    let opened = session(ada, t0());
    db.open(&opened, &token(), CAP).await;
    db.store.touch_session(opened.id, t0() + minutes(1)).await.unwrap();
    let key = api_key(ada, t0());
    db.store.create_api_key(&key).await.unwrap();
    db.store
        .record_api_key_use(&[crate::api_keys::used(key.id, t0() + minutes(1))])
        .await
        .unwrap();
    assert_eq!(since(&db, 0).await, (0, vec![]));
    assert_eq!(db.store.latest_invalidation().await.unwrap(), 0);
}

async fn ended_sessions_are_announced_once_each(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let mallory = user(&db.store, "mallory@example.com").await;
    let mine: Vec<_> = (0..4).map(|i| session(ada, t0() + minutes(i))).collect();
    for s in &mine {
        db.open(s, &token(), CAP).await;
    }
    let now = t0() + minutes(10);
    let mut cursor = 0;

    // Someone else's session, or an unknown one: nothing changes, nothing is announced.
    assert!(!db
        .store
        .end_session(mallory, mine[0].id, now, EndReason::Revoked)
        .await
        .unwrap());
    let unknown = SessionId::from_uuid(uuid::Uuid::from_u128(7));
    assert!(!db
        .store
        .end_session(ada, unknown, now, EndReason::Logout)
        .await
        .unwrap());
    assert_eq!(read(&db, &mut cursor).await, []);

    assert!(db
        .store
        .end_session(ada, mine[0].id, now, EndReason::Logout)
        .await
        .unwrap());
    assert_eq!(read(&db, &mut cursor).await, [Invalidation::Session(mine[0].id)]);
    // Ended already: nothing more.
    assert!(!db
        .store
        .end_session(ada, mine[0].id, now, EndReason::Logout)
        .await
        .unwrap());
    assert_eq!(read(&db, &mut cursor).await, []);

    // One row per ended session; the spared one and the ended one are not named.
    let ended = db
        .store
        .end_user_sessions(ada, Some(mine[2].id), now, EndReason::PasswordChanged)
        .await
        .unwrap();
    let mut announced = read(&db, &mut cursor).await;
    let mut expected: Vec<_> = ended.iter().copied().map(Invalidation::Session).collect();
    announced.sort_by_key(|i| format!("{i:?}"));
    expected.sort_by_key(|i| format!("{i:?}"));
    assert_eq!(announced, expected);
    assert_eq!(announced.len(), 2);
    assert!(!announced.contains(&Invalidation::Session(mine[2].id)));

    let ended = db
        .store
        .end_user_sessions(ada, None, now, EndReason::Suspended)
        .await
        .unwrap();
    assert_eq!(ended, [mine[2].id]);
    assert_eq!(read(&db, &mut cursor).await, [Invalidation::Session(mine[2].id)]);
    // Nothing left to end: nothing announced.
    assert!(db
        .store
        .end_user_sessions(ada, None, now, EndReason::Suspended)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(read(&db, &mut cursor).await, []);
    assert_eq!(db.store.latest_invalidation().await.unwrap(), cursor);
}

async fn refresh_token_reuse_is_announced(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let opened = session(ada, t0());
    let (first, second) = (token(), token());
    db.open(&opened, &first, CAP).await;
    let now = t0() + minutes(1);
    let outcome = db.rotate(&first, &second, now).await;
    assert!(matches!(outcome, RefreshOutcome::Rotated(_)));
    // A rotation keeps the session: nothing to forget.
    assert_eq!(since(&db, 0).await.1, []);

    let outcome = db.rotate(&first, &token(), now).await;
    assert!(matches!(outcome, RefreshOutcome::Reused(_)), "{outcome:?}");
    let (cursor, announced) = since(&db, 0).await;
    assert_eq!(announced, [Invalidation::Session(opened.id)]);

    // The session is over: further attempts change and announce nothing.
    for presented in [&first, &second] {
        let outcome = db.rotate(presented, &token(), now).await;
        assert_eq!(outcome, RefreshOutcome::Expired);
    }
    assert_eq!(since(&db, cursor).await, (cursor, vec![]));
}

async fn evicted_sessions_are_announced(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let opened: Vec<_> = (0..CAP as i64).map(|i| session(ada, t0() + minutes(i))).collect();
    for s in &opened {
        db.open(s, &token(), CAP).await;
    }
    assert_eq!(since(&db, 0).await.1, []);

    let sixth = session(ada, t0() + minutes(10));
    let ended = db.open(&sixth, &token(), CAP).await;
    assert_eq!(ended, [opened[0].id]);
    let (cursor, announced) = since(&db, 0).await;
    assert_eq!(announced, [Invalidation::Session(opened[0].id)]);

    // A lower cap evicts several: one row each, in one transaction.
    let seventh = session(ada, t0() + minutes(11));
    let ended = db.open(&seventh, &token(), 3).await;
    assert_eq!(ended.len(), 3);
    let mut announced = since(&db, cursor).await.1;
    let mut expected: Vec<_> = ended.into_iter().map(Invalidation::Session).collect();
    announced.sort_by_key(|i| format!("{i:?}"));
    expected.sort_by_key(|i| format!("{i:?}"));
    assert_eq!(announced, expected);
}

async fn plan_and_suspension_changes_are_announced(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let grace = user(&db.store, "grace@example.com").await;
    let mut cursor = 0;

    // The plan it already has: nothing written, nothing announced.
    db.store.set_plan(ada, Plan::Free).await.unwrap();
    assert_eq!(read(&db, &mut cursor).await, []);
    db.store.set_plan(ada, Plan::Pro).await.unwrap();
    assert_eq!(read(&db, &mut cursor).await, [Invalidation::User(ada)]);
    assert_eq!(db.store.user_by_id(ada).await.unwrap().unwrap().plan, Plan::Pro);

    db.store.set_suspended(grace, false).await.unwrap();
    assert_eq!(read(&db, &mut cursor).await, []);
    db.store.set_suspended(grace, true).await.unwrap();
    db.store.set_suspended(grace, true).await.unwrap();
    assert_eq!(read(&db, &mut cursor).await, [Invalidation::User(grace)]);
    assert!(db.store.user_by_id(grace).await.unwrap().unwrap().suspended);
    db.store.set_suspended(grace, false).await.unwrap();
    assert_eq!(read(&db, &mut cursor).await, [Invalidation::User(grace)]);
    assert!(!db.store.user_by_id(grace).await.unwrap().unwrap().suspended);

    // No such account: nothing.
    let nobody = UserId::from_uuid(uuid::Uuid::from_u128(7));
    db.store.set_plan(nobody, Plan::Business).await.unwrap();
    db.store.set_suspended(nobody, true).await.unwrap();
    assert_eq!(read(&db, &mut cursor).await, []);
}

async fn key_revocation_and_rotation_are_announced(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let mallory = user(&db.store, "mallory@example.com").await;
    let (revoked, rotated) = (api_key(ada, t0()), api_key(ada, t0()));
    db.store.create_api_key(&revoked).await.unwrap();
    db.store.create_api_key(&rotated).await.unwrap();
    let now = t0() + minutes(1);
    let mut cursor = 0;

    // Another user's key: nothing changes, nothing is announced.
    assert!(!db.store.revoke_api_key(mallory, revoked.id, now).await.unwrap());
    assert!(!db
        .store
        .rotate_api_key(mallory, rotated.id, &api_key(mallory, now), now)
        .await
        .unwrap());
    assert_eq!(read(&db, &mut cursor).await, []);

    assert!(db.store.revoke_api_key(ada, revoked.id, now).await.unwrap());
    assert_eq!(
        read(&db, &mut cursor).await,
        [Invalidation::ApiKey(revoked.public_id.clone())]
    );
    assert!(!db.store.revoke_api_key(ada, revoked.id, now).await.unwrap());
    assert_eq!(read(&db, &mut cursor).await, []);

    let replacement = api_key(ada, now);
    assert!(db
        .store
        .rotate_api_key(ada, rotated.id, &replacement, now)
        .await
        .unwrap());
    // The old key's public id: the new key was never cached.
    assert_eq!(
        read(&db, &mut cursor).await,
        [Invalidation::ApiKey(rotated.public_id.clone())]
    );
    assert!(!db
        .store
        .rotate_api_key(ada, rotated.id, &api_key(ada, now), now)
        .await
        .unwrap());
    assert_eq!(read(&db, &mut cursor).await, []);
}

async fn the_cursor_moves_past_what_was_read(db: TestDb) {
    let users: Vec<UserId> = {
        let mut users = Vec::new();
        for i in 0..5 {
            users.push(user(&db.store, &format!("user{i}@example.com")).await);
        }
        users
    };
    for id in &users[..3] {
        db.store.set_plan(*id, Plan::Starter).await.unwrap();
    }
    let (middle, first_three) = since(&db, 0).await;
    assert_eq!(
        first_three,
        users[..3].iter().copied().map(Invalidation::User).collect::<Vec<_>>()
    );
    assert_eq!(db.store.latest_invalidation().await.unwrap(), middle);
    // Nothing new: the same cursor back.
    assert_eq!(since(&db, middle).await, (middle, vec![]));

    for id in &users[3..] {
        db.store.set_plan(*id, Plan::Starter).await.unwrap();
    }
    let (end, last_two) = since(&db, middle).await;
    assert!(end > middle);
    assert_eq!(
        last_two,
        users[3..].iter().copied().map(Invalidation::User).collect::<Vec<_>>()
    );
    assert_eq!(db.store.latest_invalidation().await.unwrap(), end);
    // From the start again: all five, oldest first.
    assert_eq!(
        since(&db, 0).await,
        (end, users.iter().copied().map(Invalidation::User).collect())
    );
    // A fresh reader starting at the latest cursor sees only what comes next.
    assert_eq!(since(&db, end).await, (end, vec![]));
    db.store.set_suspended(users[0], true).await.unwrap();
    assert_eq!(since(&db, end).await.1, [Invalidation::User(users[0])]);
}

async fn parallel_changes_all_reach_a_polling_reader(db: TestDb) {
    // Many transactions announcing at once while a reader polls: whatever
    // the order they commit in, the reader sees each exactly once.
    const WRITERS: usize = 24;
    let mut accounts = Vec::new();
    for i in 0..WRITERS {
        let id = user(&db.store, &format!("user{i}@example.com")).await;
        let opened = session(id, t0());
        db.open(&opened, &token(), CAP).await;
        accounts.push((id, opened.id));
    }
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (store, done) = (db.store.clone(), done.clone());
        tokio::spawn(async move {
            let (mut cursor, mut seen) = (0, Vec::new());
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let (next, mut invalidations) = store.invalidations_since(cursor).await.unwrap();
                cursor = next;
                seen.append(&mut invalidations);
                if finished {
                    return seen;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let now = t0() + minutes(1);
    in_parallel(WRITERS * 2, |i| {
        let store = db.store.clone();
        let (id, session) = accounts[i / 2];
        async move {
            if i % 2 == 0 {
                store.set_plan(id, Plan::Business).await.unwrap();
            } else {
                assert!(store.end_session(id, session, now, EndReason::Revoked).await.unwrap());
            }
        }
    })
    .await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut seen = reader.await.unwrap();
    let mut expected: Vec<Invalidation> = accounts
        .iter()
        .flat_map(|(id, session)| [Invalidation::User(*id), Invalidation::Session(*session)])
        .collect();
    seen.sort_by_key(|i| format!("{i:?}"));
    expected.sort_by_key(|i| format!("{i:?}"));
    assert_eq!(seen, expected);
}

/// An appender that has taken its id but not yet committed, as another
/// instance (or a person at `psql`) would be: on PostgreSQL it holds the
/// ordering lock, on SQLite the write lock.
enum Pending {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

impl Pending {
    fn open(db: &TestDb, subject: UserId) -> Self {
        let insert = format!(
            "INSERT INTO invalidations (kind, subject, created_at) VALUES ('user', '{subject}', '{}');",
            Utc::now().naive_utc().format("%Y-%m-%d %H:%M:%S%.6f")
        );
        match db.store.backend() {
            Backend::Sqlite => {
                let mut conn = SqliteConnection::establish(db.url.strip_prefix("sqlite://").unwrap()).unwrap();
                conn.batch_execute(&format!("BEGIN IMMEDIATE; {insert}")).unwrap();
                Self::Sqlite(conn)
            }
            Backend::Postgres => {
                let mut conn = PgConnection::establish(&db.url).unwrap();
                conn.batch_execute(&format!(
                    "BEGIN; SELECT pg_advisory_xact_lock({INVALIDATION_LOCK_KEY}); {insert}"
                ))
                .unwrap();
                Self::Postgres(conn)
            }
        }
    }

    fn commit(self) {
        match self {
            Self::Sqlite(mut conn) => conn.batch_execute("COMMIT").unwrap(),
            Self::Postgres(mut conn) => conn.batch_execute("COMMIT").unwrap(),
        }
    }
}

async fn an_uncommitted_append_holds_back_the_ones_after_it(db: TestDb) {
    // The hazard: an id handed out before another but committed after it.
    // A reader that saw only the later one would move its cursor past the
    // earlier one and never see it. Appenders take turns instead: the later
    // change waits until the earlier append is committed.
    let ada = user(&db.store, "ada@example.com").await;
    let opened = session(ada, t0());
    db.open(&opened, &token(), CAP).await;
    let slow = UserId::from_uuid(uuid::Uuid::from_u128(42));
    let pending = Pending::open(&db, slow);

    let now = t0() + minutes(1);
    let later = {
        let store = db.store.clone();
        tokio::spawn(async move { store.end_session(ada, opened.id, now, EndReason::Logout).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!later.is_finished(), "the later change did not wait for its turn");
    // Meanwhile a reader sees neither and keeps its cursor.
    assert_eq!(since(&db, 0).await, (0, vec![]));

    pending.commit();
    assert!(later.await.unwrap().unwrap());
    let (cursor, announced) = since(&db, 0).await;
    assert_eq!(announced, [Invalidation::User(slow), Invalidation::Session(opened.id)]);
    assert_eq!(db.store.latest_invalidation().await.unwrap(), cursor);
}

async fn old_invalidations_are_purged_and_ids_never_reused(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    db.store.set_plan(ada, Plan::Pro).await.unwrap();
    db.store.set_plan(ada, Plan::Free).await.unwrap();
    let cursor = db.store.latest_invalidation().await.unwrap();

    // Rows are stamped with the writer's clock.
    let an_hour_ago = Utc::now() - Duration::hours(1);
    assert_eq!(db.store.purge_expired(an_hour_ago).await.unwrap(), Purged::default());
    assert_eq!(since(&db, 0).await.1.len(), 2);

    let purged = db.store.purge_expired(Utc::now() + minutes(1)).await.unwrap();
    assert_eq!(purged.invalidations, 2);
    assert_eq!(since(&db, 0).await, (0, vec![]));
    // A reader keeps its cursor; what comes next still lies beyond it.
    assert_eq!(since(&db, cursor).await, (cursor, vec![]));
    db.store.set_plan(ada, Plan::Pro).await.unwrap();
    let (next, announced) = since(&db, cursor).await;
    assert!(next > cursor);
    assert_eq!(announced, [Invalidation::User(ada)]);
}
