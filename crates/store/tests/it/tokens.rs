//! One-time e-mail tokens: single use, replaced by newer ones, expiring.

use crate::support::{in_parallel, minutes, t0, token, user, TestDb};
use convosphere_domain::ports::OneTimeTokenRepository;
use convosphere_domain::TokenKind::{EmailVerification, PasswordReset};

on_both_backends!(
    a_reset_token_is_consumed_once_under_parallel_requests,
    a_newer_token_invalidates_the_older_one_of_the_same_kind,
    a_token_stops_working_when_it_expires,
    a_token_works_only_for_its_kind_and_peeking_does_not_use_it,
);

async fn a_reset_token_is_consumed_once_under_parallel_requests(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let hash = token();
    db.store
        .issue_token(ada, PasswordReset, &hash, t0() + minutes(60))
        .await
        .unwrap();

    let answers = in_parallel(8, |_| {
        let store = db.store.clone();
        async move { store.consume_token(PasswordReset, &hash, t0()).await.unwrap() }
    })
    .await;
    let winners: Vec<_> = answers.iter().flatten().collect();
    assert_eq!(winners, [&ada], "{answers:?}");
    assert_eq!(db.store.peek_token(PasswordReset, &hash, t0()).await.unwrap(), None);
}

async fn a_newer_token_invalidates_the_older_one_of_the_same_kind(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let grace = user(&db.store, "grace@example.com").await;
    let expires = t0() + minutes(60);
    let (first, second, other_kind, other_user) = (token(), token(), token(), token());
    db.store
        .issue_token(ada, EmailVerification, &first, expires)
        .await
        .unwrap();
    db.store
        .issue_token(ada, PasswordReset, &other_kind, expires)
        .await
        .unwrap();
    db.store
        .issue_token(grace, EmailVerification, &other_user, expires)
        .await
        .unwrap();
    db.store
        .issue_token(ada, EmailVerification, &second, expires)
        .await
        .unwrap();

    assert_eq!(
        db.store.consume_token(EmailVerification, &first, t0()).await.unwrap(),
        None
    );
    assert_eq!(
        db.store.consume_token(EmailVerification, &second, t0()).await.unwrap(),
        Some(ada)
    );
    // Other kinds and other users keep theirs.
    assert_eq!(
        db.store.consume_token(PasswordReset, &other_kind, t0()).await.unwrap(),
        Some(ada)
    );
    assert_eq!(
        db.store
            .consume_token(EmailVerification, &other_user, t0())
            .await
            .unwrap(),
        Some(grace)
    );
}

async fn a_token_stops_working_when_it_expires(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let hash = token();
    let expires = t0() + minutes(60);
    db.store.issue_token(ada, PasswordReset, &hash, expires).await.unwrap();

    let just_before = expires - chrono::Duration::microseconds(1);
    assert_eq!(
        db.store.peek_token(PasswordReset, &hash, just_before).await.unwrap(),
        Some(ada)
    );
    assert_eq!(db.store.peek_token(PasswordReset, &hash, expires).await.unwrap(), None);
    assert_eq!(
        db.store.consume_token(PasswordReset, &hash, expires).await.unwrap(),
        None
    );
    assert_eq!(
        db.store.consume_token(PasswordReset, &hash, just_before).await.unwrap(),
        Some(ada)
    );
}

async fn a_token_works_only_for_its_kind_and_peeking_does_not_use_it(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let hash = token();
    db.store
        .issue_token(ada, EmailVerification, &hash, t0() + minutes(60))
        .await
        .unwrap();

    assert_eq!(db.store.peek_token(PasswordReset, &hash, t0()).await.unwrap(), None);
    assert_eq!(db.store.consume_token(PasswordReset, &hash, t0()).await.unwrap(), None);
    for _ in 0..2 {
        assert_eq!(
            db.store.peek_token(EmailVerification, &hash, t0()).await.unwrap(),
            Some(ada)
        );
    }
    assert_eq!(
        db.store.consume_token(EmailVerification, &hash, t0()).await.unwrap(),
        Some(ada)
    );
    assert_eq!(
        db.store.consume_token(EmailVerification, &hash, t0()).await.unwrap(),
        None
    );
    assert_eq!(
        db.store.peek_token(EmailVerification, &token(), t0()).await.unwrap(),
        None
    );
}
