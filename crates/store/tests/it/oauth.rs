//! OAuth logins: states taken once, identities linked once, login codes used once.

use crate::support::{in_parallel, minutes, new_user, t0, token, user, TestDb};
use convosphere_domain::oauth::{LinkOutcome, LinkRequest, LinkedIdentity, PendingLogin, Provider, UnlinkOutcome};
use convosphere_domain::ports::{CreateUserError, OAuthRepository, UserRepository};
use convosphere_domain::{Email, PasswordHash, SessionId, UserId};

on_both_backends!(
    a_pending_login_is_taken_once_under_parallel_callbacks,
    an_identity_is_linked_once_and_found_by_provider_and_subject,
    linking_claims_an_unverified_account_and_drops_its_password,
    an_account_and_its_identity_are_made_together_or_not_at_all,
    a_login_code_is_used_once_under_parallel_exchanges_and_expires,
    purging_removes_expired_oauth_rows,
    parallel_unlinks_leave_a_passwordless_account_a_way_in,
);

fn pending(provider: Provider) -> PendingLogin {
    PendingLogin {
        state: token(),
        provider,
        browser: token(),
        sealed_verifier: "sealed".into(),
        nonce: "nonce-1".into(),
        redirect_to: Some("https://app.example.com/cb?x=1".into()),
        link: None,
        created_at: t0(),
        expires_at: t0() + minutes(10),
    }
}

fn identity(provider: Provider, subject: &str, user_id: UserId, email: &str) -> LinkedIdentity {
    LinkedIdentity {
        provider,
        subject: subject.into(),
        user_id,
        email: Email::parse(email).unwrap(),
        created_at: t0(),
    }
}

async fn a_pending_login_is_taken_once_under_parallel_callbacks(db: TestDb) {
    let saved = pending(Provider::Google);
    db.store.save_pending_login(&saved).await.unwrap();
    // A link asked for while signed in reads back with its account and session.
    let mut other = pending(Provider::GitHub);
    other.redirect_to = None;
    other.link = Some(LinkRequest {
        user: user(&db.store, "ada@example.com").await,
        session: SessionId::from_uuid(uuid::Uuid::from_u128(7)),
    });
    db.store.save_pending_login(&other).await.unwrap();

    let state = saved.state;
    let answers = in_parallel(8, |_| {
        let store = db.store.clone();
        async move { store.take_pending_login(&state).await.unwrap() }
    })
    .await;
    let winners: Vec<_> = answers.into_iter().flatten().collect();
    assert_eq!(winners, [saved], "exactly one taker, and it reads back what was stored");
    assert_eq!(db.store.take_pending_login(&token()).await.unwrap(), None);
    assert_eq!(db.store.take_pending_login(&other.state).await.unwrap(), Some(other));
}

async fn an_identity_is_linked_once_and_found_by_provider_and_subject(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let grace = user(&db.store, "grace@example.com").await;
    assert_eq!(db.store.identity_owner(Provider::Google, "g-1").await.unwrap(), None);
    let linked = db
        .store
        .link_identity(&identity(Provider::Google, "g-1", ada, "ada@example.com"))
        .await
        .unwrap();
    assert_eq!(linked, LinkOutcome::Linked);
    // The same subject at another provider is another identity.
    db.store
        .link_identity(&identity(Provider::GitHub, "g-1", grace, "grace@example.com"))
        .await
        .unwrap();
    assert_eq!(
        db.store.identity_owner(Provider::Google, "g-1").await.unwrap(),
        Some(ada)
    );
    assert_eq!(
        db.store.identity_owner(Provider::GitHub, "g-1").await.unwrap(),
        Some(grace)
    );

    let again = in_parallel(4, |_| {
        let store = db.store.clone();
        async move {
            store
                .link_identity(&identity(Provider::Google, "g-1", grace, "grace@example.com"))
                .await
                .unwrap()
        }
    })
    .await;
    assert!(again.iter().all(|o| *o == LinkOutcome::AlreadyLinked(ada)), "{again:?}");
}

async fn linking_claims_an_unverified_account_and_drops_its_password(db: TestDb) {
    let mut unverified = new_user("ada@example.com");
    unverified.email_verified = false;
    unverified.password_hash = Some(PasswordHash::from_phc("$argon2id$chosen-by-someone"));
    let ada = db.store.create_user(&unverified).await.unwrap().id;
    let mut verified = new_user("grace@example.com");
    verified.email_verified = true;
    verified.password_hash = Some(PasswordHash::from_phc("$argon2id$hers"));
    let grace = db.store.create_user(&verified).await.unwrap().id;

    for (id, email) in [(ada, "ada@example.com"), (grace, "grace@example.com")] {
        db.store
            .link_identity(&identity(Provider::Google, email, id, email))
            .await
            .unwrap();
    }
    let ada = db.store.user_by_id(ada).await.unwrap().unwrap();
    assert!(ada.email_verified);
    assert_eq!(ada.password_hash, None);
    let grace = db.store.user_by_id(grace).await.unwrap().unwrap();
    assert!(grace.email_verified);
    assert_eq!(grace.password_hash.unwrap().as_str(), "$argon2id$hers");

    // An identity with another address (linked from the settings) proves
    // nothing of the account's own: it stays unverified, its password kept.
    let mut alan = new_user("alan@example.com");
    alan.email_verified = false;
    alan.password_hash = Some(PasswordHash::from_phc("$argon2id$alans"));
    let alan = db.store.create_user(&alan).await.unwrap().id;
    let linked = db
        .store
        .link_identity(&identity(Provider::GitHub, "gh-alan", alan, "alan@elsewhere.example"))
        .await
        .unwrap();
    assert_eq!(linked, LinkOutcome::Linked);
    let alan = db.store.user_by_id(alan).await.unwrap().unwrap();
    assert!(!alan.email_verified);
    assert_eq!(alan.password_hash.unwrap().as_str(), "$argon2id$alans");
}

async fn an_account_and_its_identity_are_made_together_or_not_at_all(db: TestDb) {
    let mut ada = new_user("ada@example.com");
    ada.email_verified = true;
    ada.password_hash = None;
    let made = db
        .store
        .create_user_with_identity(&ada, &identity(Provider::GitHub, "42", ada.id, "ada@example.com"))
        .await
        .unwrap();
    assert_eq!(made.id, ada.id);
    assert!(made.email_verified && made.password_hash.is_none());
    assert_eq!(
        db.store.identity_owner(Provider::GitHub, "42").await.unwrap(),
        Some(ada.id)
    );

    // The address is taken: nothing is stored, not even the identity.
    let twin = new_user("ada@example.com");
    let outcome = db
        .store
        .create_user_with_identity(&twin, &identity(Provider::Google, "g-7", twin.id, "ada@example.com"))
        .await;
    assert!(matches!(outcome, Err(CreateUserError::EmailTaken)), "{outcome:?}");
    assert_eq!(db.store.identity_owner(Provider::Google, "g-7").await.unwrap(), None);

    // The identity is taken: nothing is stored, not even the account.
    let other = new_user("other@example.com");
    let outcome = db
        .store
        .create_user_with_identity(&other, &identity(Provider::GitHub, "42", other.id, "other@example.com"))
        .await;
    assert!(matches!(outcome, Err(CreateUserError::EmailTaken)), "{outcome:?}");
    assert_eq!(db.store.user_by_id(other.id).await.unwrap(), None);

    // Parallel first logins of one person: one account, one identity.
    let answers = in_parallel(6, |_| {
        let store = db.store.clone();
        async move {
            let mut grace = new_user("grace@example.com");
            grace.email_verified = true;
            let link = identity(Provider::Facebook, "fb-1", grace.id, "grace@example.com");
            store.create_user_with_identity(&grace, &link).await.map(|u| u.id)
        }
    })
    .await;
    let made: Vec<_> = answers.iter().filter_map(|a| a.as_ref().ok()).collect();
    assert_eq!(made.len(), 1, "{answers:?}");
    assert_eq!(
        db.store.identity_owner(Provider::Facebook, "fb-1").await.unwrap(),
        Some(*made[0])
    );
}

async fn a_login_code_is_used_once_under_parallel_exchanges_and_expires(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let code = token();
    db.store
        .issue_login_code(&code, ada, Provider::GitHub, t0(), t0() + minutes(1))
        .await
        .unwrap();
    let answers = in_parallel(8, |_| {
        let store = db.store.clone();
        async move { store.consume_login_code(&code, t0()).await.unwrap() }
    })
    .await;
    let winners: Vec<_> = answers.into_iter().flatten().collect();
    assert_eq!(winners, [(ada, Provider::GitHub)]);

    let late = token();
    db.store
        .issue_login_code(&late, ada, Provider::Google, t0(), t0() + minutes(1))
        .await
        .unwrap();
    assert_eq!(
        db.store.consume_login_code(&late, t0() + minutes(1)).await.unwrap(),
        None
    );
    assert_eq!(db.store.consume_login_code(&token(), t0()).await.unwrap(), None);
}

async fn purging_removes_expired_oauth_rows(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let old = pending(Provider::Google);
    db.store.save_pending_login(&old).await.unwrap();
    let mut fresh = pending(Provider::Google);
    fresh.expires_at = t0() + minutes(600);
    db.store.save_pending_login(&fresh).await.unwrap();
    db.store
        .issue_login_code(&token(), ada, Provider::Google, t0(), t0() + minutes(1))
        .await
        .unwrap();
    let purged = db.store.purge_expired(t0() + minutes(60)).await.unwrap();
    assert_eq!(purged.oauth, 2);
    assert_eq!(db.store.take_pending_login(&old.state).await.unwrap(), None);
    assert!(db.store.take_pending_login(&fresh.state).await.unwrap().is_some());
}

async fn parallel_unlinks_leave_a_passwordless_account_a_way_in(db: TestDb) {
    let mut new = new_user("ada@example.com");
    new.password_hash = None;
    let google = identity(Provider::Google, "g-1", new.id, "ada@example.com");
    let ada = db.store.create_user_with_identity(&new, &google).await.unwrap().id;
    let github = identity(Provider::GitHub, "gh-1", ada, "ada@example.com");
    assert_eq!(db.store.link_identity(&github).await.unwrap(), LinkOutcome::Linked);
    db.store
        .note_identity_use(Provider::GitHub, "gh-1", t0() + minutes(5))
        .await
        .unwrap();
    let listed = db.store.identities(ada).await.unwrap();
    assert_eq!(listed.len(), 2);
    let used = listed.iter().find(|i| i.provider == Provider::GitHub).unwrap();
    assert_eq!(used.last_used_at, Some(t0() + minutes(5)));
    assert_eq!(used.email.as_str(), "ada@example.com");
    assert_eq!(
        listed
            .iter()
            .find(|i| i.provider == Provider::Google)
            .unwrap()
            .last_used_at,
        None
    );

    // Both at once: one goes, the other is the last way in and stays.
    let answers = in_parallel(2, |i| {
        let store = db.store.clone();
        let provider = if i == 0 { Provider::Google } else { Provider::GitHub };
        async move { store.unlink_identity(ada, provider).await.unwrap() }
    })
    .await;
    assert_eq!(
        answers.iter().filter(|a| **a == UnlinkOutcome::Unlinked).count(),
        1,
        "{answers:?}"
    );
    assert_eq!(
        answers.iter().filter(|a| **a == UnlinkOutcome::LastWayIn).count(),
        1,
        "{answers:?}"
    );
    assert_eq!(db.store.identities(ada).await.unwrap().len(), 1);

    // An account with a password may unlink its only identity; then it is gone.
    let grace = user(&db.store, "grace@example.com").await;
    db.store.set_email_verified(grace).await.unwrap(); // else linking drops the password
    let linked = identity(Provider::Facebook, "fb-1", grace, "grace@example.com");
    db.store.link_identity(&linked).await.unwrap();
    assert_eq!(
        db.store.unlink_identity(grace, Provider::Facebook).await.unwrap(),
        UnlinkOutcome::Unlinked
    );
    assert_eq!(
        db.store.unlink_identity(grace, Provider::Facebook).await.unwrap(),
        UnlinkOutcome::NotLinked
    );
    assert_eq!(db.store.identity_owner(Provider::Facebook, "fb-1").await.unwrap(), None);
}
