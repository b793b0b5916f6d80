//! Passkeys: challenges taken once, credentials registered once, counters
//! that never go back, and the last way in kept.

use crate::support::{
    idle_cutoff, in_parallel, minutes, new_session, new_user, session, signed_in, t0, token, user, TestDb,
};
use chrono::{DateTime, Utc};
use convosphere_domain::oauth::{LinkedIdentity, Provider, UnlinkOutcome};
use convosphere_domain::passkey::{
    ChallengePurpose, CredentialId, Passkey, PendingChallenge, RemoveOutcome, StoredCredential, VerifiedAssertion,
};
use convosphere_domain::ports::{
    EventRepository, OAuthRepository, PasskeyRepository, SessionRepository, UserRepository,
};
use convosphere_domain::{Email, PasskeyId, UserId};

on_both_backends!(
    a_challenge_is_taken_once_under_parallel_finishes_and_expires,
    a_credential_is_registered_once_across_accounts,
    the_counter_never_goes_back_under_parallel_sign_ins,
    a_passkey_sign_in_uses_its_challenge_and_opens_one_session_in_one_step,
    the_last_passkey_of_an_account_without_password_or_provider_stays,
    a_passkey_is_a_way_in_when_unlinking_the_last_provider,
);

fn passkey(user: UserId, name: &str, credential: &[u8]) -> Passkey {
    Passkey {
        id: PasskeyId::from_uuid(uuid::Uuid::from_u128(rand::random())),
        user_id: user,
        name: name.into(),
        credential_id: CredentialId(credential.to_vec()),
        credential: StoredCredential(format!("{{\"key\":\"{name}\"}}")),
        sign_count: 0,
        backed_up: false,
        created_at: t0(),
        last_used_at: None,
    }
}

fn assertion(sign_count: u32) -> VerifiedAssertion {
    VerifiedAssertion {
        credential: StoredCredential(format!("{{\"counter\":{sign_count}}}")),
        sign_count,
        backed_up: true,
    }
}

async fn a_challenge_is_taken_once_under_parallel_finishes_and_expires(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let registration = PendingChallenge {
        id: token(),
        purpose: ChallengePurpose::Registration(ada),
        state: "{\"rs\":1}".into(),
        expires_at: t0() + minutes(5),
    };
    db.store.save_passkey_challenge(&registration).await.unwrap();
    let id = registration.id;
    let answers = in_parallel(8, |_| {
        let store = db.store.clone();
        async move { store.take_passkey_challenge(&id, t0()).await.unwrap() }
    })
    .await;
    let winners: Vec<_> = answers.into_iter().flatten().collect();
    assert_eq!(winners.len(), 1, "exactly one finish gets the challenge");
    assert_eq!(winners[0].purpose, ChallengePurpose::Registration(ada));
    assert_eq!(winners[0].state, "{\"rs\":1}");
    assert_eq!(winners[0].expires_at, t0() + minutes(5));

    let sign_in = PendingChallenge {
        id: token(),
        purpose: ChallengePurpose::SignIn,
        state: "{}".into(),
        expires_at: t0() + minutes(5),
    };
    db.store.save_passkey_challenge(&sign_in).await.unwrap();
    assert!(
        db.store
            .take_passkey_challenge(&sign_in.id, t0() + minutes(5))
            .await
            .unwrap()
            .is_none(),
        "expired at its end"
    );
    assert!(
        db.store
            .take_passkey_challenge(&sign_in.id, t0())
            .await
            .unwrap()
            .is_none(),
        "and gone once asked for"
    );
}

fn sign_in_challenge() -> PendingChallenge {
    PendingChallenge {
        id: token(),
        purpose: ChallengePurpose::SignIn,
        state: "{\"ss\":1}".into(),
        expires_at: t0() + minutes(5),
    }
}

async fn a_passkey_sign_in_uses_its_challenge_and_opens_one_session_in_one_step(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let key = passkey(ada, "Laptop", b"credential-1");
    db.store.add_passkey(&key).await.unwrap();
    let challenge = sign_in_challenge();
    db.store.save_passkey_challenge(&challenge).await.unwrap();
    let read = db.store.passkey_challenge(&challenge.id, t0()).await.unwrap();
    assert_eq!(read.map(|c| c.state), Some(challenge.state.clone()));
    assert!(
        db.store.passkey_challenge(&challenge.id, t0()).await.unwrap().is_some(),
        "reading leaves it in place"
    );

    // Eight finishes of one challenge at once, each with a fresh counter:
    // one opens a session, and only its use is noted.
    let at = t0() + minutes(1);
    let opened: Vec<_> = (0..8).map(|_| session(ada, at)).collect();
    let answers = in_parallel(8, |i| {
        let (store, opened, id) = (db.store.clone(), opened[i].clone(), challenge.id);
        async move {
            let count = u32::try_from(i).unwrap() + 1;
            let (refresh, event) = (token(), signed_in(&opened));
            let new = new_session(&opened, &refresh, 5, &event);
            let done = store.sign_in_with_passkey(&id, key.id, &assertion(count), &new).await;
            (count, done.unwrap())
        }
    })
    .await;
    let winners: Vec<_> = answers.iter().filter(|(_, done)| done.is_some()).collect();
    assert_eq!(winners.len(), 1, "one sign-in per challenge: {answers:?}");
    let live = db.store.active_sessions(ada, at, idle_cutoff(at)).await.unwrap();
    assert_eq!(live.len(), 1);
    let stored = db.store.passkeys(ada).await.unwrap().remove(0);
    assert_eq!((stored.sign_count, stored.last_used_at), (winners[0].0, Some(at)));
    let events = db.store.events(ada, None, 10).await.unwrap();
    assert_eq!(events.len(), 1, "the sign-in event of the one session");
    assert!(db.store.passkey_challenge(&challenge.id, at).await.unwrap().is_none());

    // A counter that does not grow opens nothing, and uses the challenge up.
    let count = stored.sign_count;
    refused_sign_in(&db, &key, at, count).await;
    // An expired challenge opens nothing.
    refused_sign_in(&db, &key, t0() + minutes(5), count + 1).await;
    assert_eq!(db.store.passkeys(ada).await.unwrap()[0].sign_count, count);
}

/// A sign-in with `key` at `at` (counter `count`) on a new challenge that
/// expires at `t0() + 5 min`: refused, with no session, the challenge used.
async fn refused_sign_in(db: &TestDb, key: &Passkey, at: DateTime<Utc>, count: u32) {
    let challenge = sign_in_challenge();
    db.store.save_passkey_challenge(&challenge).await.unwrap();
    let opened = session(key.user_id, at);
    let (refresh, event) = (token(), signed_in(&opened));
    let (new, used) = (new_session(&opened, &refresh, 5, &event), assertion(count));
    let done = db.store.sign_in_with_passkey(&challenge.id, key.id, &used, &new);
    assert_eq!(done.await.unwrap(), None);
    assert!(db.store.passkey_challenge(&challenge.id, at).await.unwrap().is_none());
    assert!(db.store.session(opened.id).await.unwrap().is_none());
}

async fn a_credential_is_registered_once_across_accounts(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let bob = user(&db.store, "bob@example.com").await;
    let laptop = passkey(ada, "Laptop", b"credential-1");
    assert!(db.store.add_passkey(&laptop).await.unwrap());
    assert!(!db
        .store
        .add_passkey(&passkey(bob, "Stolen", b"credential-1"))
        .await
        .unwrap());
    let mut phone = passkey(ada, "Phone", b"credential-2");
    phone.created_at = t0() + minutes(1);
    assert!(db.store.add_passkey(&phone).await.unwrap());

    let listed = db.store.passkeys(ada).await.unwrap();
    let names: Vec<_> = listed.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["Laptop", "Phone"]);
    assert!(db.store.passkeys(bob).await.unwrap().is_empty());
    let found = db
        .store
        .passkey_by_credential(&CredentialId(b"credential-1".to_vec()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.id, found.user_id, found.credential),
        (laptop.id, ada, laptop.credential)
    );
    assert!(db
        .store
        .passkey_by_credential(&CredentialId(b"unknown".to_vec()))
        .await
        .unwrap()
        .is_none());
}

async fn the_counter_never_goes_back_under_parallel_sign_ins(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let key = passkey(ada, "Laptop", b"credential-1");
    db.store.add_passkey(&key).await.unwrap();
    // Counters 1..=8 at once, in any order: the stored one ends at 8.
    let answers = in_parallel(8, |i| {
        let store = db.store.clone();
        async move {
            let count = u32::try_from(i).unwrap() + 1;
            store
                .note_passkey_use(key.id, &assertion(count), t0() + minutes(1))
                .await
                .unwrap()
        }
    })
    .await;
    assert!(answers.iter().any(|a| *a));
    let stored = db.store.passkeys(ada).await.unwrap().remove(0);
    assert_eq!(stored.sign_count, 8);
    assert_eq!(stored.credential, assertion(8).credential);
    assert!(stored.backed_up);
    assert_eq!(stored.last_used_at, Some(t0() + minutes(1)));
    assert!(
        !db.store.note_passkey_use(key.id, &assertion(8), t0()).await.unwrap(),
        "no repeat"
    );
    assert!(
        !db.store.note_passkey_use(key.id, &assertion(3), t0()).await.unwrap(),
        "no going back"
    );

    // An authenticator without a counter stays at 0.
    let synced = passkey(ada, "Phone", b"credential-2");
    db.store.add_passkey(&synced).await.unwrap();
    assert!(db.store.note_passkey_use(synced.id, &assertion(0), t0()).await.unwrap());
    assert!(db.store.note_passkey_use(synced.id, &assertion(0), t0()).await.unwrap());
}

async fn the_last_passkey_of_an_account_without_password_or_provider_stays(db: TestDb) {
    let mut new = new_user("ada@example.com");
    new.password_hash = None;
    let ada = db.store.create_user(&new).await.unwrap().id;
    let (one, two) = (passkey(ada, "Laptop", b"c-1"), passkey(ada, "Phone", b"c-2"));
    db.store.add_passkey(&one).await.unwrap();
    db.store.add_passkey(&two).await.unwrap();

    let answers = in_parallel(2, |i| {
        let store = db.store.clone();
        let id = if i == 0 { one.id } else { two.id };
        async move { store.remove_passkey(ada, id).await.unwrap() }
    })
    .await;
    assert_eq!(
        answers.iter().filter(|a| **a == RemoveOutcome::Removed).count(),
        1,
        "{answers:?}"
    );
    assert!(answers.contains(&RemoveOutcome::LastWayIn), "{answers:?}");
    assert_eq!(db.store.passkeys(ada).await.unwrap().len(), 1);

    let bob = user(&db.store, "bob@example.com").await;
    assert_eq!(
        db.store.remove_passkey(bob, one.id).await.unwrap(),
        RemoveOutcome::NotFound
    );
    let with_password = passkey(bob, "Key", b"c-3");
    db.store.add_passkey(&with_password).await.unwrap();
    assert_eq!(
        db.store.remove_passkey(bob, with_password.id).await.unwrap(),
        RemoveOutcome::Removed,
        "an account with a password may remove its only passkey"
    );
}

async fn a_passkey_is_a_way_in_when_unlinking_the_last_provider(db: TestDb) {
    let mut new = new_user("ada@example.com");
    new.password_hash = None;
    let google = LinkedIdentity {
        provider: Provider::Google,
        subject: "g-1".into(),
        user_id: new.id,
        email: Email::parse("ada@example.com").unwrap(),
        created_at: t0(),
    };
    let ada = db.store.create_user_with_identity(&new, &google).await.unwrap().id;
    assert_eq!(
        db.store.unlink_identity(ada, Provider::Google).await.unwrap(),
        UnlinkOutcome::LastWayIn
    );
    let key = passkey(ada, "Laptop", b"c-1");
    db.store.add_passkey(&key).await.unwrap();
    assert_eq!(
        db.store.remove_passkey(ada, key.id).await.unwrap(),
        RemoveOutcome::Removed,
        "the provider stays"
    );
    db.store.add_passkey(&passkey(ada, "Laptop", b"c-2")).await.unwrap();
    assert_eq!(
        db.store.unlink_identity(ada, Provider::Google).await.unwrap(),
        UnlinkOutcome::Unlinked
    );
    assert!(db.store.user_by_id(ada).await.unwrap().is_some());
}
