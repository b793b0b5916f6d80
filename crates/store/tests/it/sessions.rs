//! Sessions: refresh rotation and reuse, the cap, activity, ending.

use crate::support::{idle_cutoff, in_parallel, minutes, new_session, session, signed_in, t0, token, user, TestDb};
use chrono::Duration;
use convosphere_domain::ports::{EventRepository, OneTimeTokenRepository, RefreshOutcome, SessionRepository};
use convosphere_domain::TokenKind;
use convosphere_domain::{AuthMethod, EndReason, SessionId, UserId};
use convosphere_store::Purged;

on_both_backends!(
    a_session_is_stored_as_given_with_its_sign_in_event,
    a_refresh_token_rotates_and_its_replacement_works,
    a_reused_refresh_token_ends_the_session,
    parallel_rotations_of_one_refresh_token_give_one_success,
    an_ended_idle_or_expired_session_does_not_rotate,
    the_session_cap_holds_under_six_parallel_logins,
    the_oldest_sessions_are_evicted_first,
    active_sessions_leave_out_idle_expired_and_ended_ones,
    a_session_is_ended_only_by_its_owner,
    ending_every_session_can_spare_the_current_one,
    touching_a_session_only_moves_it_forward,
    sessions_and_tokens_long_over_are_purged,
    a_reauthentication_renews_auth_time_and_can_replace_the_refresh_token,
);

const CAP: u32 = 5;

async fn a_session_is_stored_as_given_with_its_sign_in_event(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let opened = session(ada, t0());
    let event = signed_in(&opened);
    let ended = db
        .store
        .create_session(&new_session(&opened, &token(), CAP, &event))
        .await
        .unwrap();
    assert!(ended.is_empty());
    assert_eq!(db.store.session(opened.id).await.unwrap(), Some(opened));
    assert_eq!(db.store.events(ada, None, 10).await.unwrap(), vec![event]);
    let unknown = SessionId::from_uuid(uuid::Uuid::from_u128(7));
    assert_eq!(db.store.session(unknown).await.unwrap(), None);
}

async fn a_refresh_token_rotates_and_its_replacement_works(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let opened = session(ada, t0());
    let (first, second, third) = (token(), token(), token());
    db.open(&opened, &first, CAP).await;

    let now = t0() + minutes(20);
    let outcome = db.rotate(&first, &second, now).await;
    let RefreshOutcome::Rotated(rotated) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(rotated.id, opened.id);
    assert_eq!(rotated.last_active_at, now);
    assert_eq!(db.store.session(opened.id).await.unwrap(), Some(rotated));

    let later = now + minutes(20);
    let outcome = db.rotate(&second, &third, later).await;
    assert!(
        matches!(outcome, RefreshOutcome::Rotated(ref s) if s.last_active_at == later),
        "{outcome:?}"
    );
    let outcome = db.rotate(&token(), &token(), later).await;
    assert_eq!(outcome, RefreshOutcome::Unknown);
}

async fn a_reused_refresh_token_ends_the_session(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let opened = session(ada, t0());
    let (first, second) = (token(), token());
    db.open(&opened, &first, CAP).await;
    let now = t0() + minutes(1);
    let outcome = db.rotate(&first, &second, now).await;
    assert!(matches!(outcome, RefreshOutcome::Rotated(_)));

    let outcome = db.rotate(&first, &token(), now).await;
    assert!(matches!(outcome, RefreshOutcome::Reused(_)), "{outcome:?}");
    let stored = db.store.session(opened.id).await.unwrap().unwrap();
    assert_eq!(stored.ended_at, Some(now));
    assert_eq!(stored.end_reason, Some(EndReason::RefreshReuse));
    // The newest token of that session is dead too.
    let outcome = db.rotate(&second, &token(), now).await;
    assert_eq!(outcome, RefreshOutcome::Expired);
}

async fn parallel_rotations_of_one_refresh_token_give_one_success(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let opened = session(ada, t0());
    let presented = token();
    db.open(&opened, &presented, CAP).await;

    let now = t0() + minutes(5);
    let outcomes = in_parallel(8, |_| {
        let store = db.store.clone();
        async move {
            store
                .rotate_refresh_token(&presented, &token(), now, idle_cutoff(now))
                .await
                .unwrap()
        }
    })
    .await;
    let rotated = outcomes
        .iter()
        .filter(|o| matches!(o, RefreshOutcome::Rotated(_)))
        .count();
    let reused = outcomes
        .iter()
        .filter(|o| matches!(o, RefreshOutcome::Reused(_)))
        .count();
    assert_eq!(rotated, 1, "{outcomes:?}");
    assert!(reused >= 1, "{outcomes:?}");
    // The others came after the session had ended.
    assert!(
        outcomes.iter().all(|o| !matches!(o, RefreshOutcome::Unknown)),
        "{outcomes:?}"
    );
    let stored = db.store.session(opened.id).await.unwrap().unwrap();
    assert_eq!(stored.end_reason, Some(EndReason::RefreshReuse));
}

async fn an_ended_idle_or_expired_session_does_not_rotate(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let opened = session(ada, t0());
    let presented = token();
    db.open(&opened, &presented, CAP).await;

    // Idle: last used more than the idle timeout ago.
    let idle = t0() + Duration::hours(25);
    let outcome = db.rotate(&presented, &token(), idle).await;
    assert_eq!(outcome, RefreshOutcome::Expired);
    // Past its absolute end, even if recently active by the given cutoff.
    let past_end = opened.expires_at;
    let outcome = db
        .store
        .rotate_refresh_token(&presented, &token(), past_end, opened.created_at)
        .await
        .unwrap();
    assert_eq!(outcome, RefreshOutcome::Expired);
    // Nothing was changed: the token still works while the session is alive.
    assert_eq!(db.store.session(opened.id).await.unwrap(), Some(opened.clone()));
    let now = t0() + minutes(1);
    db.store
        .end_session(ada, opened.id, now, EndReason::Logout)
        .await
        .unwrap();
    let outcome = db.rotate(&presented, &token(), now).await;
    assert_eq!(outcome, RefreshOutcome::Expired);
    let stored = db.store.session(opened.id).await.unwrap().unwrap();
    assert_eq!(stored.end_reason, Some(EndReason::Logout));
}

async fn the_session_cap_holds_under_six_parallel_logins(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let opened: Vec<_> = (0..6).map(|i| session(ada, t0() + Duration::milliseconds(i))).collect();
    let evicted = in_parallel(6, |i| {
        let (store, opened) = (db.store.clone(), opened[i].clone());
        async move {
            store
                .create_session(&new_session(&opened, &token(), CAP, &signed_in(&opened)))
                .await
                .unwrap()
        }
    })
    .await;
    let evicted: Vec<SessionId> = evicted.into_iter().flatten().collect();
    // Whatever order they ran in, the sixth to commit found six and ended the oldest.
    assert_eq!(evicted, [opened[0].id]);

    let now = t0() + minutes(1);
    let active = db.store.active_sessions(ada, now, idle_cutoff(now)).await.unwrap();
    assert_eq!(active.len(), CAP as usize);
    let ended = db.store.session(opened[0].id).await.unwrap().unwrap();
    assert_eq!(ended.end_reason, Some(EndReason::Evicted));
}

async fn the_oldest_sessions_are_evicted_first(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let grace = user(&db.store, "grace@example.com").await;
    // Two opened in the same microsecond: the id breaks the tie.
    let mut twins = [session(ada, t0()), session(ada, t0())];
    twins.sort_by_key(|s| s.id);
    for s in &twins {
        db.open(s, &token(), 2).await;
    }
    let graced = session(grace, t0());
    db.open(&graced, &token(), 2).await;

    let third = session(ada, t0() + minutes(1));
    let ended = db.open(&third, &token(), 2).await;
    assert_eq!(ended, [twins[0].id]);
    let stored = db.store.session(twins[0].id).await.unwrap().unwrap();
    assert_eq!(stored.ended_at, Some(third.created_at));

    // A lower cap ends as many as needed; other users are not counted.
    let fourth = session(ada, t0() + minutes(2));
    let mut ended = db.open(&fourth, &token(), 1).await;
    ended.sort();
    let mut expected = vec![twins[1].id, third.id];
    expected.sort();
    assert_eq!(ended, expected);
    let now = fourth.created_at;
    let active = db.store.active_sessions(grace, now, idle_cutoff(now)).await.unwrap();
    assert_eq!(active.len(), 1);
}

async fn active_sessions_leave_out_idle_expired_and_ended_ones(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let start = t0();
    let mut oldest = session(ada, start);
    oldest.expires_at = start + Duration::hours(30);
    let idle = session(ada, start + minutes(1));
    let ended = session(ada, start + minutes(2));
    let mut recent = session(ada, start + minutes(3));
    recent.last_active_at = start + Duration::hours(20);
    let newest = session(ada, start + minutes(4));
    for s in [&oldest, &idle, &ended, &recent, &newest] {
        db.open(s, &token(), 10).await;
    }
    db.store
        .touch_session(oldest.id, start + Duration::hours(20))
        .await
        .unwrap();
    db.store
        .touch_session(newest.id, start + Duration::hours(20))
        .await
        .unwrap();
    db.store
        .end_session(ada, ended.id, start + minutes(5), EndReason::Logout)
        .await
        .unwrap();

    let ids = |list: Vec<convosphere_domain::Session>| list.into_iter().map(|s| s.id).collect::<Vec<_>>();
    let now = start + Duration::hours(26);
    let active = db.store.active_sessions(ada, now, idle_cutoff(now)).await.unwrap();
    // `idle` was last used 26 h ago; the others within the day; newest first.
    assert_eq!(ids(active), [newest.id, recent.id, oldest.id]);

    let now = start + Duration::hours(30);
    let active = db.store.active_sessions(ada, now, idle_cutoff(now)).await.unwrap();
    // `oldest` reached its absolute end.
    assert_eq!(ids(active), [newest.id, recent.id]);
}

async fn a_session_is_ended_only_by_its_owner(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let mallory = user(&db.store, "mallory@example.com").await;
    let opened = session(ada, t0());
    db.open(&opened, &token(), CAP).await;

    let now = t0() + minutes(3);
    assert!(!db
        .store
        .end_session(mallory, opened.id, now, EndReason::Revoked)
        .await
        .unwrap());
    assert_eq!(db.store.session(opened.id).await.unwrap().unwrap().ended_at, None);

    assert!(db
        .store
        .end_session(ada, opened.id, now, EndReason::Revoked)
        .await
        .unwrap());
    let stored = db.store.session(opened.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.ended_at, stored.end_reason),
        (Some(now), Some(EndReason::Revoked))
    );
    // Already ended: nothing to do, and the first reason stays.
    assert!(!db
        .store
        .end_session(ada, opened.id, now, EndReason::Logout)
        .await
        .unwrap());
    assert_eq!(db.store.session(opened.id).await.unwrap(), Some(stored));
    let unknown = SessionId::from_uuid(uuid::Uuid::from_u128(7));
    assert!(!db
        .store
        .end_session(ada, unknown, now, EndReason::Logout)
        .await
        .unwrap());
}

async fn ending_every_session_can_spare_the_current_one(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let grace = user(&db.store, "grace@example.com").await;
    let mine: Vec<_> = (0..3).map(|i| session(ada, t0() + minutes(i))).collect();
    for s in &mine {
        db.open(s, &token(), CAP).await;
    }
    let theirs = session(grace, t0());
    db.open(&theirs, &token(), CAP).await;

    let now = t0() + minutes(10);
    let mut ended = db
        .store
        .end_user_sessions(ada, Some(mine[1].id), now, EndReason::PasswordChanged)
        .await
        .unwrap();
    ended.sort();
    let mut expected = vec![mine[0].id, mine[2].id];
    expected.sort();
    assert_eq!(ended, expected);
    let active = db.store.active_sessions(ada, now, idle_cutoff(now)).await.unwrap();
    assert_eq!(active.iter().map(|s| s.id).collect::<Vec<_>>(), [mine[1].id]);
    let stored = db.store.session(mine[0].id).await.unwrap().unwrap();
    assert_eq!(stored.end_reason, Some(EndReason::PasswordChanged));

    let ended = db
        .store
        .end_user_sessions(ada, None, now, EndReason::PasswordReset)
        .await
        .unwrap();
    assert_eq!(ended, [mine[1].id]);
    assert!(db
        .store
        .active_sessions(ada, now, idle_cutoff(now))
        .await
        .unwrap()
        .is_empty());
    // Another user's session is untouched.
    assert_eq!(
        db.store.active_sessions(grace, now, idle_cutoff(now)).await.unwrap(),
        [theirs]
    );
    let nobody = UserId::from_uuid(uuid::Uuid::from_u128(7));
    assert!(db
        .store
        .end_user_sessions(nobody, None, now, EndReason::Suspended)
        .await
        .unwrap()
        .is_empty());
}

async fn touching_a_session_only_moves_it_forward(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let opened = session(ada, t0());
    db.open(&opened, &token(), CAP).await;
    let later = t0() + minutes(30);
    db.store.touch_session(opened.id, later).await.unwrap();
    db.store.touch_session(opened.id, t0() + minutes(10)).await.unwrap();
    assert_eq!(
        db.store.session(opened.id).await.unwrap().unwrap().last_active_at,
        later
    );
}

async fn sessions_and_tokens_long_over_are_purged(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let (ended, expired, alive) = (
        session(ada, t0()),
        session(ada, t0()),
        session(ada, t0() + Duration::days(2)),
    );
    let (ended_refresh, alive_refresh) = (token(), token());
    db.open(&ended, &ended_refresh, CAP).await;
    db.open(&expired, &token(), CAP).await;
    let now = alive.created_at;
    db.open(&alive, &alive_refresh, CAP).await;
    db.store
        .end_session(ada, ended.id, t0() + minutes(1), EndReason::Logout)
        .await
        .unwrap();
    let (old_link, new_link) = (token(), token());
    db.store
        .issue_token(ada, TokenKind::EmailVerification, &old_link, t0() + minutes(60))
        .await
        .unwrap();
    db.store
        .issue_token(ada, TokenKind::PasswordReset, &new_link, t0() + Duration::days(9))
        .await
        .unwrap();

    let purged = db.store.purge_expired(t0() + Duration::days(8)).await.unwrap();
    assert_eq!(
        purged,
        Purged {
            sessions: 2,
            one_time_tokens: 1,
            oauth: 0,
            passkey_challenges: 0,
            // The end of `ended`, written (by the wall clock) long before.
            invalidations: 1,
        }
    );
    assert_eq!(db.store.session(ended.id).await.unwrap(), None);
    assert_eq!(db.store.session(expired.id).await.unwrap(), None);
    // Refresh tokens went with their sessions; the live session keeps its own.
    let outcome = db.rotate(&ended_refresh, &token(), now).await;
    assert_eq!(outcome, RefreshOutcome::Unknown);
    let outcome = db.rotate(&alive_refresh, &token(), now).await;
    assert!(matches!(outcome, RefreshOutcome::Rotated(_)), "{outcome:?}");
    assert_eq!(
        db.store
            .peek_token(TokenKind::PasswordReset, &new_link, now)
            .await
            .unwrap(),
        Some(ada)
    );
}

async fn a_reauthentication_renews_auth_time_and_can_replace_the_refresh_token(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let eve = user(&db.store, "eve@example.com").await;
    let opened = session(ada, t0());
    let (first, replacement) = (token(), token());
    db.open(&opened, &first, CAP).await;
    let now = t0() + minutes(30);
    let amr = [AuthMethod::Password, AuthMethod::OneTimeCode];
    // Not Eve's session: nothing changes.
    assert!(!db
        .store
        .reauthenticate_session(eve, opened.id, now, &amr, None)
        .await
        .unwrap());
    assert_eq!(db.store.session(opened.id).await.unwrap().unwrap().auth_time, t0());

    // Without a replacement the refresh token goes on working.
    assert!(db
        .store
        .reauthenticate_session(ada, opened.id, now, &amr, None)
        .await
        .unwrap());
    let read = db.store.session(opened.id).await.unwrap().unwrap();
    assert_eq!((read.auth_time, read.amr.as_slice()), (now, &amr[..]));
    let second = token();
    let outcome = db.rotate(&first, &second, now).await;
    assert!(matches!(outcome, RefreshOutcome::Rotated(_)), "{outcome:?}");

    // With one, the earlier token is used up (presenting it is a reuse) and the replacement works.
    let later = now + minutes(5);
    let marked = db
        .store
        .reauthenticate_session(ada, opened.id, later, &amr[..1], Some(&replacement));
    assert!(marked.await.unwrap());
    let outcome = db.rotate(&replacement, &token(), later).await;
    assert!(
        matches!(outcome, RefreshOutcome::Rotated(ref s) if s.auth_time == later),
        "{outcome:?}"
    );
    let outcome = db.rotate(&second, &token(), later).await;
    assert!(matches!(outcome, RefreshOutcome::Reused(_)), "{outcome:?}");

    // An ended session is not renewed.
    assert!(!db
        .store
        .reauthenticate_session(ada, opened.id, later, &amr, None)
        .await
        .unwrap());
}
