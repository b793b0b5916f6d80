//! API keys: storage, listing, revocation, rotation, recorded use.

use crate::support::{api_key, in_parallel, minutes, t0, user, TestDb};
use convosphere_domain::api_key::{ApiKey, ApiKeyId};
use convosphere_domain::ports::ApiKeyRepository;
use convosphere_domain::{Scope, ScopeSet, UserId};

on_both_backends!(
    a_key_is_stored_as_given,
    keys_are_listed_newest_first_and_only_to_their_owner,
    a_public_id_is_unique,
    a_key_is_revoked_once_and_only_by_its_owner,
    rotation_revokes_the_old_key_and_stores_the_new_one,
    a_failed_rotation_stores_nothing,
    parallel_rotations_of_one_key_give_one_success,
    key_use_is_recorded_in_batches_and_only_forward,
);

async fn stored(db: &TestDb, key: &ApiKey) -> ApiKey {
    db.store.api_key(key.user_id, key.id).await.unwrap().unwrap()
}

async fn a_key_is_stored_as_given(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let mut key = api_key(ada, t0());
    key.expires_at = Some(t0() + minutes(60 * 24 * 30));
    key.scopes = ScopeSet::all();
    db.store.create_api_key(&key).await.unwrap();

    assert_eq!(db.store.api_key(ada, key.id).await.unwrap(), Some(key.clone()));
    assert_eq!(
        db.store.api_key_by_public_id(&key.public_id).await.unwrap(),
        Some(key.clone())
    );
    // One scope, no expiry: the other shapes round-trip too.
    let mut narrow = api_key(ada, t0());
    narrow.scopes = [Scope::WebhooksRead].into_iter().collect();
    db.store.create_api_key(&narrow).await.unwrap();
    assert_eq!(stored(&db, &narrow).await, narrow);

    let unknown = ApiKeyId::from_uuid(uuid::Uuid::from_u128(7));
    assert_eq!(db.store.api_key(ada, unknown).await.unwrap(), None);
    assert_eq!(db.store.api_key_by_public_id("zzzzzzzz").await.unwrap(), None);
    // The public id is exact: no case folding, no prefix match.
    let shouted = key.public_id.to_uppercase();
    if shouted != key.public_id {
        assert_eq!(db.store.api_key_by_public_id(&shouted).await.unwrap(), None);
    }
    assert_eq!(db.store.api_key_by_public_id(&key.public_id[..7]).await.unwrap(), None);
}

async fn keys_are_listed_newest_first_and_only_to_their_owner(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let bob = user(&db.store, "bob@example.com").await;
    let oldest = api_key(ada, t0());
    // Two created in the same microsecond: the id breaks the tie, descending.
    let mut twins = [api_key(ada, t0() + minutes(1)), api_key(ada, t0() + minutes(1))];
    twins.sort_by_key(|k| k.id);
    let newest = api_key(ada, t0() + minutes(2));
    let theirs = api_key(bob, t0() + minutes(3));
    for key in [&twins[0], &newest, &oldest, &theirs, &twins[1]] {
        db.store.create_api_key(key).await.unwrap();
    }

    let listed = db.store.api_keys(ada).await.unwrap();
    assert_eq!(listed, [newest, twins[1].clone(), twins[0].clone(), oldest.clone()]);
    assert_eq!(db.store.api_keys(bob).await.unwrap(), std::slice::from_ref(&theirs));
    let nobody = UserId::from_uuid(uuid::Uuid::from_u128(7));
    assert!(db.store.api_keys(nobody).await.unwrap().is_empty());

    // Another user's key is not found by id…
    assert_eq!(db.store.api_key(bob, oldest.id).await.unwrap(), None);
    assert_eq!(db.store.api_key(ada, theirs.id).await.unwrap(), None);
    // …but authentication finds any key by its public id.
    assert_eq!(
        db.store.api_key_by_public_id(&theirs.public_id).await.unwrap(),
        Some(theirs)
    );
}

async fn a_public_id_is_unique(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let first = api_key(ada, t0());
    db.store.create_api_key(&first).await.unwrap();
    let mut clash = api_key(ada, t0());
    clash.public_id = first.public_id.clone();
    assert!(db.store.create_api_key(&clash).await.is_err());
    assert_eq!(db.store.api_keys(ada).await.unwrap(), [first]);
}

async fn a_key_is_revoked_once_and_only_by_its_owner(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let mallory = user(&db.store, "mallory@example.com").await;
    let key = api_key(ada, t0());
    db.store.create_api_key(&key).await.unwrap();

    let now = t0() + minutes(5);
    assert!(!db.store.revoke_api_key(mallory, key.id, now).await.unwrap());
    assert_eq!(stored(&db, &key).await.revoked_at, None);

    assert!(db.store.revoke_api_key(ada, key.id, now).await.unwrap());
    let revoked = stored(&db, &key).await;
    assert_eq!(revoked.revoked_at, Some(now));
    assert_eq!(
        ApiKey {
            revoked_at: None,
            ..revoked.clone()
        },
        key
    );

    // Already revoked: nothing changes, the first time stays.
    assert!(!db.store.revoke_api_key(ada, key.id, now + minutes(1)).await.unwrap());
    assert_eq!(stored(&db, &key).await, revoked);
    let unknown = ApiKeyId::from_uuid(uuid::Uuid::from_u128(7));
    assert!(!db.store.revoke_api_key(ada, unknown, now).await.unwrap());
}

async fn rotation_revokes_the_old_key_and_stores_the_new_one(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let old = api_key(ada, t0());
    db.store.create_api_key(&old).await.unwrap();

    let now = t0() + minutes(10);
    let mut replacement = api_key(ada, now);
    replacement.name = old.name.clone();
    replacement.scopes = old.scopes;
    assert!(db.store.rotate_api_key(ada, old.id, &replacement, now).await.unwrap());

    assert_eq!(stored(&db, &old).await.revoked_at, Some(now));
    assert_eq!(stored(&db, &replacement).await, replacement);
    assert_eq!(
        db.store.api_key_by_public_id(&replacement.public_id).await.unwrap(),
        Some(replacement.clone())
    );
    let listed: Vec<ApiKeyId> = db.store.api_keys(ada).await.unwrap().iter().map(|k| k.id).collect();
    assert_eq!(listed, [replacement.id, old.id]);
}

async fn a_failed_rotation_stores_nothing(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let mallory = user(&db.store, "mallory@example.com").await;
    let key = api_key(ada, t0());
    db.store.create_api_key(&key).await.unwrap();
    let now = t0() + minutes(1);

    // Not theirs.
    let theft = api_key(mallory, now);
    assert!(!db.store.rotate_api_key(mallory, key.id, &theft, now).await.unwrap());
    assert_eq!(stored(&db, &key).await, key);
    assert_eq!(db.store.api_key_by_public_id(&theft.public_id).await.unwrap(), None);

    // Revoked already.
    db.store.revoke_api_key(ada, key.id, now).await.unwrap();
    let late = api_key(ada, now);
    assert!(!db.store.rotate_api_key(ada, key.id, &late, now).await.unwrap());
    assert_eq!(db.store.api_key_by_public_id(&late.public_id).await.unwrap(), None);
    assert_eq!(db.store.api_keys(ada).await.unwrap().len(), 1);

    // A replacement that cannot be stored (its public id is taken) undoes
    // the revocation: one transaction.
    let live = api_key(ada, now);
    db.store.create_api_key(&live).await.unwrap();
    let mut clash = api_key(ada, now);
    clash.public_id = key.public_id.clone();
    assert!(db.store.rotate_api_key(ada, live.id, &clash, now).await.is_err());
    assert_eq!(stored(&db, &live).await.revoked_at, None);
}

async fn parallel_rotations_of_one_key_give_one_success(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let key = api_key(ada, t0());
    db.store.create_api_key(&key).await.unwrap();
    let now = t0() + minutes(1);
    let replacements: Vec<ApiKey> = (0..8).map(|_| api_key(ada, now)).collect();

    let outcomes = in_parallel(replacements.len(), |i| {
        let (store, replacement) = (db.store.clone(), replacements[i].clone());
        async move { store.rotate_api_key(ada, key.id, &replacement, now).await.unwrap() }
    })
    .await;
    assert_eq!(outcomes.iter().filter(|won| **won).count(), 1, "{outcomes:?}");
    let winner = outcomes.iter().position(|won| *won).unwrap();

    let listed = db.store.api_keys(ada).await.unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.contains(&replacements[winner]));
    for (i, loser) in replacements.iter().enumerate().filter(|(i, _)| *i != winner) {
        assert_eq!(
            db.store.api_key_by_public_id(&loser.public_id).await.unwrap(),
            None,
            "replacement {i}"
        );
    }
}

async fn key_use_is_recorded_in_batches_and_only_forward(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let (first, second, untouched) = (api_key(ada, t0()), api_key(ada, t0()), api_key(ada, t0()));
    for key in [&first, &second, &untouched] {
        db.store.create_api_key(key).await.unwrap();
    }
    let unknown = ApiKeyId::from_uuid(uuid::Uuid::from_u128(7));

    // One batch: several uses of one key (the latest counts, in any order),
    // another key, and a key that no longer exists (ignored).
    db.store
        .record_api_key_use(&[
            used(first.id, t0() + minutes(3)),
            used(second.id, t0() + minutes(2)),
            used(first.id, t0() + minutes(5)),
            used(unknown, t0() + minutes(5)),
            used(first.id, t0() + minutes(4)),
        ])
        .await
        .unwrap();
    assert_eq!(stored(&db, &first).await.last_used_at, Some(t0() + minutes(5)));
    assert_eq!(stored(&db, &second).await.last_used_at, Some(t0() + minutes(2)));
    assert_eq!(stored(&db, &untouched).await.last_used_at, None);

    // A late batch with older uses moves nothing back; newer ones move forward.
    db.store
        .record_api_key_use(&[used(first.id, t0() + minutes(1)), used(second.id, t0() + minutes(6))])
        .await
        .unwrap();
    assert_eq!(stored(&db, &first).await.last_used_at, Some(t0() + minutes(5)));
    assert_eq!(stored(&db, &second).await.last_used_at, Some(t0() + minutes(6)));

    db.store.record_api_key_use(&[]).await.unwrap();

    // Two instances flushing overlapping batches at once (in opposite
    // orders) neither deadlock nor lose the latest use.
    let batches = in_parallel(6, |i| {
        let store = db.store.clone();
        let mut uses = vec![
            used(first.id, t0() + minutes(10 + i as i64)),
            used(second.id, t0() + minutes(20 - i as i64)),
            used(untouched.id, t0() + minutes(30)),
        ];
        if i % 2 == 1 {
            uses.reverse();
        }
        async move { store.record_api_key_use(&uses).await }
    })
    .await;
    assert!(batches.iter().all(Result::is_ok), "{batches:?}");
    assert_eq!(stored(&db, &first).await.last_used_at, Some(t0() + minutes(15)));
    assert_eq!(stored(&db, &second).await.last_used_at, Some(t0() + minutes(20)));
    assert_eq!(stored(&db, &untouched).await.last_used_at, Some(t0() + minutes(30)));

    // The client of the latest use is kept with it.
    let mut latest = used(first.id, t0() + minutes(40));
    latest.ip = Some("203.0.113.9".into());
    latest.user_agent = Some("sdk/2.1".into());
    db.store
        .record_api_key_use(&[used(first.id, t0() + minutes(39)), latest])
        .await
        .unwrap();
    let client = db.store.api_key_last_client(first.id).await.unwrap();
    assert_eq!(client.ip.as_deref(), Some("203.0.113.9"));
    assert_eq!(client.user_agent.as_deref(), Some("sdk/2.1"));
    assert_eq!(db.store.api_key_last_client(second.id).await.unwrap().ip, None);
}

/// A use of `key` at `at`, from nowhere in particular.
pub fn used(key: ApiKeyId, at: chrono::DateTime<chrono::Utc>) -> convosphere_domain::usage::KeyUse {
    convosphere_domain::usage::KeyUse {
        key,
        at,
        ip: None,
        user_agent: None,
    }
}
