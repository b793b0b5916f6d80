//! Usage counts, key networks and the day's unusual-use e-mails.

use crate::support::{api_key, in_parallel, minutes, t0, user, TestDb};
use chrono::Duration;
use convosphere_domain::ports::{ApiKeyRepository, UsageRepository};
use convosphere_domain::usage::{Granularity, UsageCounts, UsageDelta, UsageRange, UsageSubject};
use convosphere_domain::{EventKind, UserId};

on_both_backends!(
    instances_adding_at_once_add_up_exactly_by_hour_and_by_day,
    a_key_and_its_account_are_read_apart,
    a_network_answers_when_it_was_last_seen_and_an_alert_is_claimed_once,
    usage_past_the_retention_is_pruned,
);

/// The hour of the tests' clock.
fn h0() -> chrono::DateTime<chrono::Utc> {
    Granularity::Hour.floor(t0())
}

fn counts(allowed: u64, rate_limited: u64, insufficient_scope: u64, peak: u64) -> UsageCounts {
    UsageCounts {
        allowed,
        rate_limited,
        insufficient_scope,
        peak_per_minute: peak,
    }
}

fn range(granularity: Granularity, from: chrono::DateTime<chrono::Utc>, hours: i64) -> UsageRange {
    UsageRange {
        from,
        to: from + Duration::hours(hours),
        granularity,
    }
}

async fn instances_adding_at_once_add_up_exactly_by_hour_and_by_day(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let key = api_key(ada, h0());
    db.store.create_api_key(&key).await.unwrap();
    // Eight flushes at once, each with the key's and the account's rows of
    // two hours, in opposite orders: no deadlock, every count once.
    let results = in_parallel(8, |i| {
        let store = db.store.clone();
        let mut deltas = Vec::new();
        for hour in [0, 1] {
            let at = h0() + Duration::hours(hour);
            let c = counts(10, 1, 2, 3 + i as u64);
            deltas.push(UsageDelta {
                user: ada,
                key: Some(key.id),
                hour: at,
                counts: c,
            });
            deltas.push(UsageDelta {
                user: ada,
                key: None,
                hour: at,
                counts: c,
            });
        }
        if i % 2 == 1 {
            deltas.reverse();
        }
        async move { store.add_usage(&deltas).await }
    })
    .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let hours = db
        .store
        .usage(UsageSubject::Key(key.id), &range(Granularity::Hour, h0(), 3))
        .await
        .unwrap();
    assert_eq!(hours.len(), 2);
    for bucket in &hours {
        assert_eq!(bucket.counts, counts(80, 8, 16, 10), "{bucket:?}");
    }
    assert_eq!(hours[1].start, h0() + Duration::hours(1));
    let day = Granularity::Day.floor(h0());
    let days = db
        .store
        .usage(UsageSubject::Account(ada), &range(Granularity::Day, day, 48))
        .await
        .unwrap();
    let total: u64 = days.iter().map(|b| b.counts.allowed).sum();
    assert_eq!(total, 160);
    assert!(days.iter().all(|b| b.start == Granularity::Day.floor(b.start)));
}

async fn a_key_and_its_account_are_read_apart(db: TestDb) {
    let (ada, grace) = (
        user(&db.store, "ada@example.com").await,
        user(&db.store, "grace@example.com").await,
    );
    let (a, b) = (api_key(ada, h0()), api_key(ada, h0()));
    for key in [&a, &b] {
        db.store.create_api_key(key).await.unwrap();
    }
    let at = h0() + minutes(30);
    let delta = |user: UserId, key, allowed| UsageDelta {
        user,
        key,
        hour: at,
        counts: counts(allowed, 0, 0, allowed),
    };
    db.store
        .add_usage(&[
            delta(ada, Some(a.id), 3),
            delta(ada, Some(b.id), 4),
            delta(ada, None, 7),
            delta(grace, None, 9),
        ])
        .await
        .unwrap();
    let hour = |subject| {
        let store = db.store.clone();
        async move { store.usage(subject, &range(Granularity::Hour, h0(), 1)).await.unwrap() }
    };
    assert_eq!(hour(UsageSubject::Key(a.id)).await[0].counts.allowed, 3);
    assert_eq!(hour(UsageSubject::Key(b.id)).await[0].counts.allowed, 4);
    let account = hour(UsageSubject::Account(ada)).await;
    assert_eq!(account.len(), 1);
    assert_eq!(account[0].start, h0(), "on the hour");
    assert_eq!(account[0].counts.allowed, 7);
    assert_eq!(hour(UsageSubject::Account(grace)).await[0].counts.allowed, 9);
    // Outside the range: nothing.
    let later = db
        .store
        .usage(
            UsageSubject::Key(a.id),
            &range(Granularity::Hour, h0() + Duration::hours(1), 5),
        )
        .await
        .unwrap();
    assert!(later.is_empty());
}

async fn a_network_answers_when_it_was_last_seen_and_an_alert_is_claimed_once(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let key = api_key(ada, h0());
    db.store.create_api_key(&key).await.unwrap();
    let net = "203.0.113.0/24";
    assert_eq!(db.store.note_key_network(key.id, net, h0()).await.unwrap(), None);
    let later = h0() + Duration::days(3);
    assert_eq!(db.store.note_key_network(key.id, net, later).await.unwrap(), Some(h0()));
    assert_eq!(
        db.store.note_key_network(key.id, net, later).await.unwrap(),
        Some(later)
    );
    assert_eq!(
        db.store
            .note_key_network(key.id, "198.51.100.0/24", later)
            .await
            .unwrap(),
        None
    );

    let claims = in_parallel(6, |_| {
        let store = db.store.clone();
        async move {
            store
                .claim_usage_alert(key.id, EventKind::ApiKeyNewNetwork, later)
                .await
                .unwrap()
        }
    })
    .await;
    assert_eq!(claims.iter().filter(|c| **c).count(), 1, "{claims:?}");
    // Another kind, and the next day, are claims of their own.
    assert!(db
        .store
        .claim_usage_alert(key.id, EventKind::ApiKeyRateLimited, later)
        .await
        .unwrap());
    assert!(!db
        .store
        .claim_usage_alert(key.id, EventKind::ApiKeyNewNetwork, later + minutes(5))
        .await
        .unwrap());
    assert!(db
        .store
        .claim_usage_alert(key.id, EventKind::ApiKeyNewNetwork, later + Duration::days(1))
        .await
        .unwrap());
}

async fn usage_past_the_retention_is_pruned(db: TestDb) {
    let ada = user(&db.store, "ada@example.com").await;
    let old = UsageDelta {
        user: ada,
        key: None,
        hour: h0(),
        counts: counts(1, 0, 0, 1),
    };
    let new = UsageDelta {
        hour: h0() + Duration::days(3),
        ..old.clone()
    };
    db.store.add_usage(&[old, new]).await.unwrap();
    let pruned = db.store.prune_usage(h0() + Duration::days(2)).await.unwrap();
    assert_eq!(pruned, 2, "the old hour and its day");
    let left = db
        .store
        .usage(
            UsageSubject::Account(ada),
            &range(Granularity::Day, Granularity::Day.floor(h0()), 24 * 5),
        )
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].start, Granularity::Day.floor(h0() + Duration::days(3)));
}
