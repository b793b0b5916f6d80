//! Accounts: creation, look-up, profile, flags, and the failed-login counter.

use crate::mfa_events::event;
use crate::support::{in_parallel, minutes, new_user, t0, token, user, TestDb};
use convosphere_domain::ports::{
    CreateUserError, EventRepository, OneTimeTokenRepository, RefusedLogin, UserRepository,
};
use convosphere_domain::profile::ProfileUpdate;
use convosphere_domain::{ClientContext, Email, EventKind, PasswordHash, Plan, TokenKind, UserId};

on_both_backends!(
    an_account_is_found_by_id_and_by_email_in_any_case,
    a_taken_email_is_refused_whatever_its_case,
    a_profile_update_changes_only_the_fields_it_names,
    flags_plan_and_password_hash_are_stored,
    parallel_failed_logins_lock_the_account_exactly_once,
    failed_logins_are_not_counted_while_the_account_is_locked,
    refused_logins_are_written_for_known_and_unknown_addresses,
    a_signup_stores_the_account_its_link_and_its_event_or_nothing,
);

async fn an_account_is_found_by_id_and_by_email_in_any_case(db: TestDb) {
    let new = new_user("  Ada@Example.COM ");
    let created = db.store.create_user(&new).await.unwrap();
    assert_eq!(created.id, new.id);
    assert_eq!(created.email.as_str(), "ada@example.com");
    assert_eq!(created.created_at, t0());
    assert_eq!(created.company.as_deref(), Some("Analytical Engines"));
    assert_eq!(created.plan, Plan::Free);
    assert_eq!(created.password_hash, new.password_hash);
    assert!(!created.email_verified && !created.mfa_enabled && !created.suspended);
    assert_eq!((created.failed_logins, created.locked_until), (0, None));

    assert_eq!(db.store.user_by_id(new.id).await.unwrap(), Some(created.clone()));
    let shouted = Email::parse("ADA@EXAMPLE.com").unwrap();
    assert_eq!(db.store.user_by_email(&shouted).await.unwrap(), Some(created));

    let nobody = Email::parse("nobody@example.com").unwrap();
    assert_eq!(db.store.user_by_email(&nobody).await.unwrap(), None);
    let unknown = UserId::from_uuid(uuid::Uuid::from_u128(7));
    assert_eq!(db.store.user_by_id(unknown).await.unwrap(), None);
}

async fn a_taken_email_is_refused_whatever_its_case(db: TestDb) {
    db.store.create_user(&new_user("ada@example.com")).await.unwrap();
    let again = db.store.create_user(&new_user("ADA@example.com")).await;
    assert!(matches!(again, Err(CreateUserError::EmailTaken)), "{again:?}");
    db.store.create_user(&new_user("grace@example.com")).await.unwrap();
}

async fn a_profile_update_changes_only_the_fields_it_names(db: TestDb) {
    let id = user(&db.store, "ada@example.com").await;
    let update = ProfileUpdate {
        name: Some("Ada King".into()),
        company: Some(None),
        country: None,
        phone: Some(Some("+44 20 7946 0958".into())),
    };
    let updated = db.store.update_profile(id, &update).await.unwrap().unwrap();
    assert_eq!(updated.name, "Ada King");
    assert_eq!(updated.company, None);
    assert_eq!(updated.country, None);
    assert_eq!(updated.phone.as_deref(), Some("+44 20 7946 0958"));
    assert_eq!(db.store.user_by_id(id).await.unwrap(), Some(updated.clone()));

    let country_only = ProfileUpdate {
        country: Some(Some("United Kingdom".into())),
        ..ProfileUpdate::default()
    };
    let again = db.store.update_profile(id, &country_only).await.unwrap().unwrap();
    assert_eq!(again.country.as_deref(), Some("United Kingdom"));
    assert_eq!((again.name, again.phone), (updated.name, updated.phone));

    let nobody = UserId::from_uuid(uuid::Uuid::from_u128(7));
    assert_eq!(
        db.store
            .update_profile(nobody, &ProfileUpdate::default())
            .await
            .unwrap(),
        None
    );
}

async fn flags_plan_and_password_hash_are_stored(db: TestDb) {
    let id = user(&db.store, "ada@example.com").await;
    let verified = db.store.set_email_verified(id).await.unwrap().unwrap();
    assert!(verified.email_verified);
    db.store.set_plan(id, Plan::Business).await.unwrap();
    db.store.set_suspended(id, true).await.unwrap();
    let hash = PasswordHash::from_phc("$argon2id$v=19$m=19456,t=2,p=1$bmV3$bmV3");
    db.store.set_password_hash(id, &hash).await.unwrap();

    let stored = db.store.user_by_id(id).await.unwrap().unwrap();
    assert!(stored.email_verified && stored.suspended);
    assert_eq!(stored.plan, Plan::Business);
    assert_eq!(stored.password_hash, Some(hash));

    db.store.set_suspended(id, false).await.unwrap();
    assert!(!db.store.user_by_id(id).await.unwrap().unwrap().suspended);
    let nobody = UserId::from_uuid(uuid::Uuid::from_u128(7));
    assert_eq!(db.store.set_email_verified(nobody).await.unwrap(), None);
}

async fn parallel_failed_logins_lock_the_account_exactly_once(db: TestDb) {
    let id = user(&db.store, "ada@example.com").await;
    let until = t0() + minutes(15);
    let answers = in_parallel(15, |_| {
        let store = db.store.clone();
        async move { store.record_failed_login(id, t0(), 10, until).await.unwrap() }
    })
    .await;
    assert_eq!(answers.iter().filter(|a| a.locked).count(), 1, "{answers:?}");

    let stored = db.store.user_by_id(id).await.unwrap().unwrap();
    assert_eq!(stored.locked_until, Some(until));
    assert!(stored.is_locked_out(t0()));
    // The five calls after the lock found it locked and counted nothing.
    assert_eq!(stored.failed_logins, 0);
}

async fn failed_logins_are_not_counted_while_the_account_is_locked(db: TestDb) {
    let id = user(&db.store, "ada@example.com").await;
    let until = t0() + minutes(15);
    for expected in [false, false, true, false, false] {
        let answer = db.store.record_failed_login(id, t0(), 3, until).await.unwrap();
        assert_eq!(answer.locked, expected);
    }
    let stored = db.store.user_by_id(id).await.unwrap().unwrap();
    assert_eq!((stored.failed_logins, stored.locked_until), (0, Some(until)));

    // Once the lockout is over, failures count again from zero.
    let later = until + minutes(1);
    let answer = db
        .store
        .record_failed_login(id, later, 3, later + minutes(15))
        .await
        .unwrap();
    assert!(!answer.locked);
    assert_eq!(db.store.user_by_id(id).await.unwrap().unwrap().failed_logins, 1);

    // A second lockout, then an operator lifts it.
    for _ in 0..2 {
        db.store
            .record_failed_login(id, later, 3, later + minutes(15))
            .await
            .unwrap();
    }
    assert!(db.store.user_by_id(id).await.unwrap().unwrap().is_locked_out(later));
    db.store.clear_failed_logins(id).await.unwrap();
    let cleared = db.store.user_by_id(id).await.unwrap().unwrap();
    assert_eq!((cleared.failed_logins, cleared.locked_until), (0, None));

    let nobody = UserId::from_uuid(uuid::Uuid::from_u128(7));
    assert!(
        !db.store
            .record_failed_login(nobody, t0(), 1, until)
            .await
            .unwrap()
            .locked
    );
}

async fn refused_logins_are_written_for_known_and_unknown_addresses(db: TestDb) {
    let id = user(&db.store, "ada@example.com").await;
    let until = t0() + minutes(15);
    let refused = event(id, EventKind::LoginFailed, 0);
    let counted = RefusedLogin::Account {
        event: &refused,
        count: true,
    };
    assert!(!db.store.record_refused_login(counted, 2, until).await.unwrap().locked);
    let uncounted = RefusedLogin::Account {
        event: &event(id, EventKind::LoginFailed, 1),
        count: false,
    };
    assert!(!db.store.record_refused_login(uncounted, 2, until).await.unwrap().locked);
    assert_eq!(db.store.user_by_id(id).await.unwrap().unwrap().failed_logins, 1);
    let second = event(id, EventKind::LoginFailed, 2);
    let locking = RefusedLogin::Account {
        event: &second,
        count: true,
    };
    assert!(db.store.record_refused_login(locking, 2, until).await.unwrap().locked);
    assert_eq!(db.store.events(id, None, 10).await.unwrap().len(), 3);

    let client = ClientContext {
        ip: Some("203.0.113.9".into()),
        user_agent: Some("curl/8".into()),
    };
    for minute in [3, 4] {
        let unknown = RefusedLogin::UnknownAddress {
            at: t0() + minutes(minute),
            client: &client,
        };
        assert!(!db.store.record_refused_login(unknown, 1, until).await.unwrap().locked);
    }
    assert_eq!(db.store.unknown_login_attempts(t0()).await.unwrap(), 2);
    assert_eq!(db.store.unknown_login_attempts(t0() + minutes(4)).await.unwrap(), 1);
    // Nothing else changed; they go with the audit trail's purge.
    assert_eq!(db.store.events(id, None, 10).await.unwrap().len(), 3);
    db.store.purge_events(t0() + minutes(60)).await.unwrap();
    assert_eq!(db.store.unknown_login_attempts(t0()).await.unwrap(), 0);
}

async fn a_signup_stores_the_account_its_link_and_its_event_or_nothing(db: TestDb) {
    let ada = new_user("ada@example.com");
    let link = token();
    let signed_up = event(ada.id, EventKind::Signup, 0);
    let created = db
        .store
        .create_user_with_link(&ada, &link, t0() + minutes(60), &signed_up)
        .await
        .unwrap();
    assert_eq!(created.id, ada.id);
    let owner = db
        .store
        .peek_token(TokenKind::EmailVerification, &link, t0())
        .await
        .unwrap();
    assert_eq!(owner, Some(ada.id));
    let events = db.store.events(ada.id, None, 10).await.unwrap();
    assert_eq!(events, vec![signed_up]);

    // A taken address: nothing of the second signup is stored.
    let again = new_user("ADA@example.com");
    let second_link = token();
    let refused = db
        .store
        .create_user_with_link(
            &again,
            &second_link,
            t0() + minutes(60),
            &event(again.id, EventKind::Signup, 1),
        )
        .await;
    assert!(matches!(refused, Err(CreateUserError::EmailTaken)));
    let none = db
        .store
        .peek_token(TokenKind::EmailVerification, &second_link, t0())
        .await;
    assert_eq!(none.unwrap(), None);
    assert!(db.store.events(again.id, None, 10).await.unwrap().is_empty());

    // A write that fails after the account's (here: the link's hash is
    // taken) leaves no account behind: one transaction.
    let grace = new_user("grace@example.com");
    let failed = db
        .store
        .create_user_with_link(
            &grace,
            &link,
            t0() + minutes(60),
            &event(grace.id, EventKind::Signup, 2),
        )
        .await;
    assert!(matches!(failed, Err(CreateUserError::Infra(_))));
    assert_eq!(db.store.user_by_id(grace.id).await.unwrap(), None);
    let email = Email::parse("grace@example.com").unwrap();
    assert_eq!(db.store.user_by_email(&email).await.unwrap(), None);
    assert!(db.store.events(grace.id, None, 10).await.unwrap().is_empty());
}
