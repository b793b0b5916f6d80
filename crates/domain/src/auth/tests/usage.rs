//! Usage: counts written and read back, and unusual use told to the owner.

use super::*;
use crate::usage::{KeyNetwork, KeySighting, UsageBatch, UsageCounts, UsageDelta, UsageOutcome, UsageRange};

/// A key of ada's, made now.
fn ada_key(world: &World, auth: &TestAuth<'_>) -> (User, ApiKey) {
    let user = world.verified_user(auth, "ada@example.com");
    let created = block_on(auth.create_api_key(
        &signed_in(world, &user),
        "Production",
        &scopes(&["agents:read"]),
        None,
        &client(),
    ))
    .unwrap();
    (user, created.record)
}

fn seen_from(auth: &TestAuth<'_>, key: &ApiKey, ip: &str, at: DateTime<Utc>) {
    let sighting = KeySighting::Network {
        key: key.id,
        user: key.user_id,
        network: KeyNetwork::of(ip.parse().unwrap()),
        at,
    };
    block_on(auth.review_usage(&[sighting])).unwrap();
}

fn rate_limited(auth: &TestAuth<'_>, key: &ApiKey, at: DateTime<Utc>) {
    let sighting = KeySighting::RateLimited {
        key: key.id,
        user: key.user_id,
        at,
    };
    block_on(auth.review_usage(&[sighting])).unwrap();
}

fn events_of(world: &World, kind: EventKind) -> Vec<crate::SecurityEvent> {
    let state = world.store.0.lock().unwrap();
    state.events.iter().filter(|e| e.kind == kind).cloned().collect()
}

fn unusual_mails(world: &World) -> Vec<Mail> {
    world
        .mails()
        .into_iter()
        .filter(|m| matches!(m, Mail::UnusualKeyUse { .. }))
        .collect()
}

#[test]
fn a_new_network_after_the_first_day_is_told_once_a_day() {
    let world = World::new();
    let auth = world.auth();
    let (_, key) = ada_key(&world, &auth);
    // The first day is quiet: the key finds its networks.
    seen_from(&auth, &key, "203.0.113.7", world.clock.now());
    world.advance(Duration::hours(23));
    seen_from(&auth, &key, "198.51.100.7", world.clock.now());
    assert!(events_of(&world, EventKind::ApiKeyNewNetwork).is_empty());
    assert!(unusual_mails(&world).is_empty());

    world.advance(Duration::hours(2));
    // A network of the first day is known; another /24 is new.
    seen_from(&auth, &key, "203.0.113.200", world.clock.now());
    assert!(unusual_mails(&world).is_empty());
    seen_from(&auth, &key, "192.0.2.1", world.clock.now());
    let events = events_of(&world, EventKind::ApiKeyNewNetwork);
    assert_eq!(events.len(), 1);
    let detail = |name: &str| {
        events[0]
            .details
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(detail("network").as_deref(), Some("192.0.2.0/24"));
    assert_eq!(detail("prefix"), Some(key.prefix()));
    let mails = unusual_mails(&world);
    assert_eq!(mails.len(), 1);
    let Mail::UnusualKeyUse {
        key_name,
        prefix,
        what,
        key_link,
        to,
        ..
    } = &mails[0]
    else {
        unreachable!()
    };
    assert_eq!(
        (key_name.as_str(), prefix.as_str(), to.as_str()),
        ("Production", &*key.prefix(), "ada@example.com")
    );
    assert_eq!(*what, UnusualUse::NewNetwork("192.0.2.0/24".into()));
    assert!(
        key_link.ends_with(&format!("/settings/api-keys/{}", key.id)),
        "{key_link}"
    );

    // Another new network the same day: an event, no second e-mail.
    seen_from(&auth, &key, "2001:db8:9::1", world.clock.now());
    assert_eq!(events_of(&world, EventKind::ApiKeyNewNetwork).len(), 2);
    assert_eq!(unusual_mails(&world).len(), 1);

    // The next day, a network unused for over 30 days is new again.
    world.advance(Duration::days(31));
    seen_from(&auth, &key, "192.0.2.99", world.clock.now());
    assert_eq!(events_of(&world, EventKind::ApiKeyNewNetwork).len(), 3);
    assert_eq!(unusual_mails(&world).len(), 2);
}

#[test]
fn a_days_first_rate_limited_answer_is_told_once() {
    let world = World::new();
    let auth = world.auth();
    let (_, key) = ada_key(&world, &auth);
    for _ in 0..3 {
        rate_limited(&auth, &key, world.clock.now());
    }
    assert_eq!(events_of(&world, EventKind::ApiKeyRateLimited).len(), 1);
    let mails = unusual_mails(&world);
    assert_eq!(mails.len(), 1);
    assert!(matches!(
        &mails[0],
        Mail::UnusualKeyUse {
            what: UnusualUse::RateLimited,
            ..
        }
    ));
    world.advance(Duration::days(1));
    rate_limited(&auth, &key, world.clock.now());
    assert_eq!(events_of(&world, EventKind::ApiKeyRateLimited).len(), 2);
    assert_eq!(unusual_mails(&world).len(), 2);
}

#[test]
fn usage_is_read_back_for_the_key_and_the_account_with_the_plans_limit() {
    let world = World::new();
    let auth = world.auth();
    let (user, key) = ada_key(&world, &auth);
    let now = world.clock.now();
    let hour = crate::usage::Granularity::Hour.floor(now);
    let counts = |allowed, limited| UsageCounts {
        allowed,
        rate_limited: limited,
        insufficient_scope: 0,
        peak_per_minute: allowed + limited,
    };
    let batch = UsageBatch {
        deltas: vec![
            UsageDelta {
                user: user.id,
                key: Some(key.id),
                hour,
                counts: counts(5, 1),
            },
            UsageDelta {
                user: user.id,
                key: None,
                hour,
                counts: counts(7, 1),
            },
        ],
        uses: vec![crate::usage::KeyUse {
            key: key.id,
            at: now,
            ip: Some("203.0.113.7".into()),
            user_agent: Some("sdk/1.0".into()),
        }],
        ..Default::default()
    };
    // A write that fails part-way is tried again whole (as the flusher
    // does): nothing is counted twice.
    world.store.0.lock().unwrap().failing_key_use_writes = 1;
    assert!(block_on(auth.record_usage(&batch)).is_err());
    block_on(auth.record_usage(&batch)).unwrap();
    let range = UsageRange::parse(None, None, Some("hour"), now).unwrap();
    let of_key = block_on(auth.key_usage(&user, key.id, range)).unwrap();
    assert_eq!(of_key.usage.totals.allowed, 5);
    assert_eq!(of_key.usage.totals.rate_limited, 1);
    assert_eq!(of_key.usage.limit_per_minute, 100, "the free plan's");
    assert_eq!(of_key.usage.buckets.len(), 24);
    assert_eq!(of_key.last_client.ip.as_deref(), Some("203.0.113.7"));
    assert_eq!(of_key.key.last_used_at, Some(now));
    let of_account = block_on(auth.account_usage(&user, range)).unwrap();
    assert_eq!(
        of_account.totals.requests(),
        8,
        "the account's own counts: keys and sessions"
    );
    assert_eq!(UsageCounts::one(UsageOutcome::RateLimited).requests(), 1);
    // Another user's key is not found.
    let grace = world.verified_user(&auth, "grace@example.com");
    assert!(matches!(
        block_on(auth.key_usage(&grace, key.id, range)),
        Err(NotFoundError::NotFound)
    ));
}
