//! TOTP enrolments, recovery codes and the audit trail.

use crate::support::{in_parallel, minutes, t0, token, user, TestDb};
use convosphere_domain::ports::Invalidation;
use convosphere_domain::ports::{EventRepository, InvalidationFeed, MfaRepository, UserRepository};
use convosphere_domain::{EventKind, SecurityEvent, UserId};

on_both_backends!(
    totp_is_off_until_confirmed_and_confirming_turns_it_on_once,
    a_totp_step_is_accepted_once_under_parallel_use,
    a_recovery_code_works_once_under_parallel_use,
    disabling_forgets_the_secret_and_the_codes,
    events_come_back_newest_first_in_pages_and_are_purged,
);

async fn totp_is_off_until_confirmed_and_confirming_turns_it_on_once(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    assert_eq!(db.store.totp(ada).await.unwrap(), None);
    assert!(db.store.begin_totp(ada, "sealed-1", t0()).await.unwrap());
    // Beginning again replaces the unconfirmed secret.
    assert!(db.store.begin_totp(ada, "sealed-2", t0()).await.unwrap());
    let pending = db.store.totp(ada).await.unwrap().unwrap();
    assert_eq!((pending.sealed_secret.as_str(), pending.confirmed), ("sealed-2", false));
    assert!(!db.store.user_by_id(ada).await.unwrap().unwrap().mfa_enabled);

    let cursor = db.store.latest_invalidation().await.unwrap();
    let codes = [token(), token()];
    let confirms = in_parallel(4, |_| {
        let store = db.store.clone();
        async move { store.confirm_totp(ada, 100, &codes, t0()).await.unwrap() }
    })
    .await;
    assert_eq!(confirms.iter().filter(|c| **c).count(), 1, "{confirms:?}");
    let on = db.store.totp(ada).await.unwrap().unwrap();
    assert!(on.confirmed);
    assert_eq!(on.last_step, Some(100));
    assert!(db.store.user_by_id(ada).await.unwrap().unwrap().mfa_enabled);
    assert_eq!(db.store.recovery_codes_left(ada).await.unwrap(), 2);
    let (_, seen) = db.store.invalidations_since(cursor).await.unwrap();
    assert!(seen.contains(&Invalidation::User(ada)), "caches learn of it: {seen:?}");
    // While on, a new setup is refused and changes nothing.
    assert!(!db.store.begin_totp(ada, "sealed-3", t0()).await.unwrap());
    assert_eq!(db.store.totp(ada).await.unwrap().unwrap().sealed_secret, "sealed-2");
}

async fn a_totp_step_is_accepted_once_under_parallel_use(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    // Not confirmed: no step is accepted.
    db.store.begin_totp(ada, "sealed", t0()).await.unwrap();
    assert!(!db.store.use_totp_step(ada, 101).await.unwrap());
    db.store.confirm_totp(ada, 100, &[], t0()).await.unwrap();
    let uses = in_parallel(8, |_| {
        let store = db.store.clone();
        async move { store.use_totp_step(ada, 101).await.unwrap() }
    })
    .await;
    assert_eq!(uses.iter().filter(|u| **u).count(), 1, "{uses:?}");
    assert!(
        !db.store.use_totp_step(ada, 100).await.unwrap(),
        "an older step is refused"
    );
    assert!(db.store.use_totp_step(ada, 102).await.unwrap());
}

async fn a_recovery_code_works_once_under_parallel_use(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let grace = user(&db.store, "grace@example.com").await;
    let code = token();
    db.store.begin_totp(ada, "sealed", t0()).await.unwrap();
    db.store.confirm_totp(ada, 1, &[code, token()], t0()).await.unwrap();
    assert!(
        !db.store.use_recovery_code(grace, &code, t0()).await.unwrap(),
        "another user's code"
    );
    let uses = in_parallel(8, |_| {
        let store = db.store.clone();
        async move { store.use_recovery_code(ada, &code, t0()).await.unwrap() }
    })
    .await;
    assert_eq!(uses.iter().filter(|u| **u).count(), 1, "{uses:?}");
    assert_eq!(db.store.recovery_codes_left(ada).await.unwrap(), 1);
}

async fn disabling_forgets_the_secret_and_the_codes(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let code = token();
    db.store.begin_totp(ada, "sealed", t0()).await.unwrap();
    db.store.confirm_totp(ada, 1, &[code], t0()).await.unwrap();
    db.store.disable_totp(ada).await.unwrap();
    assert_eq!(db.store.totp(ada).await.unwrap(), None);
    assert!(!db.store.user_by_id(ada).await.unwrap().unwrap().mfa_enabled);
    assert!(!db.store.use_recovery_code(ada, &code, t0()).await.unwrap());
    assert_eq!(db.store.recovery_codes_left(ada).await.unwrap(), 0);
    // And it can be set up afresh.
    assert!(db.store.begin_totp(ada, "sealed-again", t0()).await.unwrap());
}

pub fn event(user: UserId, kind: EventKind, minute: i64) -> SecurityEvent {
    let n = minute.to_string();
    crate::support::event_at(
        user,
        kind,
        t0() + minutes(minute),
        &[("reason", "invalid_password"), ("n", &n)],
    )
}

async fn events_come_back_newest_first_in_pages_and_are_purged(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let grace = user(&db.store, "grace@example.com").await;
    let written: Vec<_> = (0..5).map(|m| event(ada, EventKind::LoginFailed, m)).collect();
    for e in &written {
        db.store.record_event(e).await.unwrap();
    }
    db.store
        .record_event(&event(grace, EventKind::Signup, 0))
        .await
        .unwrap();

    let all = db.store.events(ada, None, 100).await.unwrap();
    let mut expected = written.clone();
    expected.reverse();
    assert_eq!(all, expected, "newest first, every field as written");
    let page = db.store.events(ada, None, 2).await.unwrap();
    assert_eq!(page, expected[..2]);
    let next = db.store.events(ada, Some(page[1].id), 2).await.unwrap();
    assert_eq!(next, expected[2..4]);

    let purged = db.store.purge_events(t0() + minutes(3)).await.unwrap();
    assert_eq!(purged, 4, "ada's first three and grace's one");
    let left = db.store.events(ada, None, 100).await.unwrap();
    assert_eq!(left, expected[..2]);
}
