//! Usage counting on the hot path: every request with a valid credential
//! is counted in memory, per key and per account and minute, and written
//! every two seconds as additions to hourly and daily buckets (with each
//! key's last use, which the contract allows to be five seconds late).
//!
//! The counters wait in `DashMap`s shared by the worker threads: a counter
//! already there is a read of its shard and an atomic add, so a gateway's
//! calls with one key, on every worker, take no lock for writing. A flush
//! writes what was added since the last one; a minute's counter goes once
//! its last addition is written. A crash loses at most the last interval.
//!
//! A key used from a network this instance has not seen it use in the last
//! hour, or refused `rate_limited` for the first time today here, becomes a
//! sighting that the domain reviews for unusual use after the flush.

use crate::state::AppAuth;
use chrono::{DateTime, Utc};
use convosphere_cache::TtlCache;
use convosphere_domain::api_key::ApiKeyId;
use convosphere_domain::usage::{
    Granularity, KeyNetwork, KeySighting, KeyUse, UsageBatch, UsageCounts, UsageDelta, UsageOutcome,
};
use convosphere_domain::UserId;
use dashmap::DashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// How often counts and uses are written.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(2);

/// How long a (key, network) or a key's day of `rate_limited` is known to
/// this instance before it is noted again.
const SEEN_FOR: Duration = Duration::from_secs(3600);

/// The most counts kept for a write that failed (then the oldest go).
const MAX_RETRIED: usize = 200_000;

/// The counters of one minute of a key (or, with no key, the account).
type Slot = (UserId, Option<ApiKeyId>, i64);

#[derive(Default)]
struct MinuteCounts {
    allowed: AtomicU64,
    rate_limited: AtomicU64,
    insufficient_scope: AtomicU64,
    /// What the flushes wrote so far (only the flusher touches it).
    written: Mutex<UsageCounts>,
}

impl MinuteCounts {
    fn add(&self, outcome: UsageOutcome) {
        let counter = match outcome {
            UsageOutcome::Allowed => &self.allowed,
            UsageOutcome::RateLimited => &self.rate_limited,
            UsageOutcome::InsufficientScope => &self.insufficient_scope,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn now(&self) -> UsageCounts {
        let mut counts = UsageCounts {
            allowed: self.allowed.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            insufficient_scope: self.insufficient_scope.load(Ordering::Relaxed),
            peak_per_minute: 0,
        };
        counts.peak_per_minute = counts.requests();
        counts
    }
}

/// A key's latest use on this instance.
struct LastUse {
    /// Nanoseconds since the epoch (enough until 2262).
    at: AtomicI64,
    client: Mutex<(Option<IpAddr>, Option<String>)>,
}

/// What this instance learnt lately, so that it tells each only once an hour.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Seen {
    Network(ApiKeyId, KeyNetwork),
    RateLimited(ApiKeyId, chrono::NaiveDate),
}

/// One request as the gateway decided it.
#[derive(Debug, Clone, Copy)]
pub struct CountedRequest<'a> {
    /// The account.
    pub user: UserId,
    /// The key, when an API key made it.
    pub key: Option<ApiKeyId>,
    /// The answer.
    pub outcome: UsageOutcome,
    /// The client (through trusted proxies), when known.
    pub ip: Option<IpAddr>,
    /// Its `User-Agent`.
    pub user_agent: Option<&'a str>,
}

/// Counts, uses and sightings not yet written.
pub struct UsageRecorder {
    minutes: DashMap<Slot, MinuteCounts>,
    last_uses: DashMap<ApiKeyId, LastUse>,
    seen: TtlCache<Seen, ()>,
    sightings: Mutex<Vec<KeySighting>>,
    /// A batch whose write failed, for the next flush.
    retry: Mutex<UsageBatch>,
}

impl Default for UsageRecorder {
    fn default() -> Self {
        Self {
            minutes: DashMap::new(),
            last_uses: DashMap::new(),
            seen: TtlCache::new(convosphere_cache::CAPACITY, SEEN_FOR),
            sightings: Mutex::default(),
            retry: Mutex::default(),
        }
    }
}

fn minute_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(60)
}

fn add_to(map: &DashMap<Slot, MinuteCounts>, slot: Slot, outcome: UsageOutcome) {
    if let Some(counts) = map.get(&slot) {
        counts.add(outcome);
        return;
    }
    map.entry(slot).or_default().add(outcome);
}

impl UsageRecorder {
    /// Counts one request, now.
    pub fn count(&self, request: CountedRequest<'_>) {
        self.count_at(request, Utc::now());
    }

    fn count_at(&self, request: CountedRequest<'_>, at: DateTime<Utc>) {
        let minute = minute_of(at);
        add_to(&self.minutes, (request.user, None, minute), request.outcome);
        let Some(key) = request.key else { return };
        add_to(&self.minutes, (request.user, Some(key), minute), request.outcome);
        self.note_use(key, at, request.ip, request.user_agent);
        if let Some(network) = request.ip.map(KeyNetwork::of) {
            self.sight(Seen::Network(key, network), || KeySighting::Network {
                key,
                user: request.user,
                network,
                at,
            });
        }
        if request.outcome == UsageOutcome::RateLimited {
            self.sight(Seen::RateLimited(key, at.date_naive()), || KeySighting::RateLimited {
                key,
                user: request.user,
                at,
            });
        }
    }

    fn note_use(&self, key: ApiKeyId, at: DateTime<Utc>, ip: Option<IpAddr>, user_agent: Option<&str>) {
        let nanos = at.timestamp_nanos_opt().unwrap_or(i64::MAX);
        let same = |client: &(Option<IpAddr>, Option<String>)| client.0 == ip && client.1.as_deref() == user_agent;
        if let Some(last) = self.last_uses.get(&key) {
            last.at.fetch_max(nanos, Ordering::Relaxed);
            // Another thread writing the client is writing one just as recent.
            if let Ok(mut client) = last.client.try_lock() {
                if !same(&client) {
                    *client = (ip, user_agent.map(str::to_owned));
                }
            }
            return;
        }
        self.last_uses.entry(key).or_insert_with(|| LastUse {
            at: AtomicI64::new(nanos),
            client: Mutex::new((ip, user_agent.map(str::to_owned))),
        });
    }

    fn sight(&self, seen: Seen, sighting: impl FnOnce() -> KeySighting) {
        if self.seen.get(&seen).is_none() {
            self.seen.insert(seen, ());
            self.sightings
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(sighting());
        }
    }

    /// Takes what was counted since the last take (and a failed batch).
    pub fn take(&self, now: DateTime<Utc>) -> UsageBatch {
        let mut batch = std::mem::take(&mut *self.retry.lock().unwrap_or_else(|e| e.into_inner()));
        let current = minute_of(now);
        let mut done = Vec::new();
        for entry in self.minutes.iter() {
            let (user, key, minute) = *entry.key();
            let counted = entry.value().now();
            let mut written = entry.value().written.lock().unwrap_or_else(|e| e.into_inner());
            let delta = UsageCounts {
                allowed: counted.allowed - written.allowed,
                rate_limited: counted.rate_limited - written.rate_limited,
                insufficient_scope: counted.insufficient_scope - written.insufficient_scope,
                peak_per_minute: counted.peak_per_minute,
            };
            *written = counted;
            if delta.requests() > 0 {
                let hour = Granularity::Hour.floor(DateTime::from_timestamp(minute * 60, 0).unwrap_or(now));
                batch.deltas.push(UsageDelta {
                    user,
                    key,
                    hour,
                    counts: delta,
                });
            }
            if minute < current {
                done.push(*entry.key());
            }
        }
        for slot in done {
            // Gone only if nothing was added since it was read.
            self.minutes.remove_if(&slot, |_, counts| {
                counts.now() == *counts.written.lock().unwrap_or_else(|e| e.into_inner())
            });
        }
        let keys: Vec<ApiKeyId> = self.last_uses.iter().map(|entry| *entry.key()).collect();
        for key in keys {
            if let Some((key, last)) = self.last_uses.remove(&key) {
                let (ip, user_agent) = last.client.into_inner().unwrap_or_else(|e| e.into_inner());
                batch.uses.push(KeyUse {
                    key,
                    at: DateTime::from_timestamp_nanos(last.at.into_inner()),
                    ip: ip.map(|ip| ip.to_string()),
                    user_agent,
                });
            }
        }
        batch
            .sightings
            .append(&mut self.sightings.lock().unwrap_or_else(|e| e.into_inner()));
        batch
    }

    /// Keeps a batch whose write failed for the next flush (the newest
    /// counts, when more than [`MAX_RETRIED`] wait).
    fn keep(&self, mut failed: UsageBatch) {
        let over = failed.deltas.len().saturating_sub(MAX_RETRIED);
        failed.deltas.drain(..over);
        *self.retry.lock().unwrap_or_else(|e| e.into_inner()) = failed;
    }

    /// Writes what was counted (last uses and counts, then the review of
    /// sightings); keeps it for the next try on failure.
    pub async fn flush(&self, auth: &AppAuth) {
        let batch = self.take(Utc::now());
        if batch.is_empty() {
            return;
        }
        if let Err(error) = auth.record_usage(&batch).await {
            tracing::warn!(%error, counts = batch.deltas.len(), "cannot write usage; will retry");
            self.keep(batch);
            return;
        }
        if let Err(error) = auth.review_usage(&batch.sightings).await {
            tracing::warn!(%error, sightings = batch.sightings.len(), "cannot review key use; will retry");
            self.keep(UsageBatch {
                sightings: batch.sightings,
                ..UsageBatch::default()
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ApiKeyId {
        ApiKeyId::from_uuid(uuid::Uuid::new_v4())
    }

    fn request(user: UserId, key: Option<ApiKeyId>, outcome: UsageOutcome, ip: &str) -> CountedRequest<'static> {
        CountedRequest {
            user,
            key,
            outcome,
            ip: ip.parse().ok(),
            user_agent: Some("sdk/1"),
        }
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_772_000_000 / 3600 * 3600 + secs, 0).unwrap()
    }

    fn sum(batch: &UsageBatch, key: Option<ApiKeyId>) -> UsageCounts {
        let mut total = UsageCounts::default();
        for delta in batch.deltas.iter().filter(|d| d.key == key) {
            total.merge(&delta.counts);
        }
        total
    }

    #[test]
    fn each_request_is_written_once_for_its_key_and_its_account() {
        let recorder = UsageRecorder::default();
        let (user, a) = (UserId::from_uuid(uuid::Uuid::new_v4()), key());
        for _ in 0..3 {
            recorder.count_at(request(user, Some(a), UsageOutcome::Allowed, "203.0.113.1"), at(5));
        }
        recorder.count_at(request(user, Some(a), UsageOutcome::RateLimited, "203.0.113.1"), at(6));
        recorder.count_at(request(user, None, UsageOutcome::InsufficientScope, ""), at(7));
        let first = recorder.take(at(8));
        let of_key = sum(&first, Some(a));
        assert_eq!((of_key.allowed, of_key.rate_limited, of_key.peak_per_minute), (3, 1, 4));
        let of_account = sum(&first, None);
        assert_eq!((of_account.requests(), of_account.insufficient_scope), (5, 1));
        assert_eq!(first.uses.len(), 1);
        assert_eq!(first.uses[0].ip.as_deref(), Some("203.0.113.1"));
        // More in the same minute: only what is new, with the minute's peak so far.
        recorder.count_at(request(user, Some(a), UsageOutcome::Allowed, "203.0.113.1"), at(9));
        let second = recorder.take(at(10));
        let of_key = sum(&second, Some(a));
        assert_eq!((of_key.allowed, of_key.rate_limited, of_key.peak_per_minute), (1, 0, 5));
        // A past minute with nothing new is gone; nothing is written twice.
        let third = recorder.take(at(130));
        assert!(third.deltas.is_empty(), "{:?}", third.deltas);
        assert!(recorder.minutes.is_empty());
    }

    #[test]
    fn a_network_and_a_days_rate_limit_are_sighted_once() {
        let recorder = UsageRecorder::default();
        let (user, a) = (UserId::from_uuid(uuid::Uuid::new_v4()), key());
        for ip in ["203.0.113.1", "203.0.113.2", "198.51.100.1"] {
            recorder.count_at(request(user, Some(a), UsageOutcome::RateLimited, ip), at(1));
        }
        let sightings = recorder.take(at(2)).sightings;
        let networks = sightings.iter().filter(|s| matches!(s, KeySighting::Network { .. }));
        assert_eq!(networks.count(), 2, "{sightings:?}");
        let limited = sightings
            .iter()
            .filter(|s| matches!(s, KeySighting::RateLimited { .. }));
        assert_eq!(limited.count(), 1);
        recorder.count_at(request(user, Some(a), UsageOutcome::RateLimited, "203.0.113.3"), at(3));
        assert!(recorder.take(at(4)).sightings.is_empty());
    }

    #[test]
    fn counts_from_every_thread_add_up() {
        let recorder = UsageRecorder::default();
        let user = UserId::from_uuid(uuid::Uuid::new_v4());
        let keys: Vec<ApiKeyId> = (0..16).map(|_| key()).collect();
        std::thread::scope(|scope| {
            for chunk in keys.chunks(4) {
                let recorder = &recorder;
                scope.spawn(move || {
                    for _ in 0..250 {
                        for key in chunk {
                            recorder.count(request(user, Some(*key), UsageOutcome::Allowed, "192.0.2.1"));
                        }
                    }
                });
            }
        });
        let batch = recorder.take(Utc::now() + chrono::Duration::minutes(2));
        assert_eq!(sum(&batch, None).allowed, 16 * 250);
        assert!(keys.iter().all(|key| sum(&batch, Some(*key)).allowed == 250));
    }
}
