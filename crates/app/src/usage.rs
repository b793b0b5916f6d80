//! `last_used_at` of API keys, written in batches every two seconds instead
//! of once per request (the contract allows five).
//!
//! The uses wait in a `DashMap` shared by the worker threads: a key already
//! waiting is a read of its shard and an atomic update of its time, so a
//! gateway's calls with one key, on every worker, take no lock for writing.

use chrono::{DateTime, Utc};
use convosphere_domain::api_key::ApiKeyId;
use convosphere_domain::ports::ApiKeyRepository;
use dashmap::DashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// How often recorded uses are written.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(2);

/// Uses of API keys not yet written: the latest use of each key, in
/// nanoseconds since the epoch (enough until 2262).
#[derive(Default)]
pub struct UsageRecorder {
    pending: DashMap<ApiKeyId, AtomicI64>,
}

impl UsageRecorder {
    /// Notes that a key was used now.
    pub fn record(&self, key: ApiKeyId) {
        self.record_at(key, Utc::now());
    }

    fn record_at(&self, key: ApiKeyId, at: DateTime<Utc>) {
        let at = at.timestamp_nanos_opt().unwrap_or(i64::MAX);
        if let Some(latest) = self.pending.get(&key) {
            latest.fetch_max(at, Ordering::Relaxed);
            return;
        }
        self.pending
            .entry(key)
            .or_insert_with(|| AtomicI64::new(at))
            .fetch_max(at, Ordering::Relaxed);
    }

    /// Takes every pending use.
    pub fn take(&self) -> Vec<(ApiKeyId, DateTime<Utc>)> {
        let keys: Vec<ApiKeyId> = self.pending.iter().map(|entry| *entry.key()).collect();
        keys.into_iter()
            .filter_map(|key| self.pending.remove(&key))
            .map(|(key, at)| (key, DateTime::from_timestamp_nanos(at.into_inner())))
            .collect()
    }

    /// Writes the pending uses; keeps them for the next try on failure.
    pub async fn flush<R: ApiKeyRepository>(&self, store: &R) {
        let batch = self.take();
        if batch.is_empty() {
            return;
        }
        if let Err(error) = store.record_api_key_use(&batch).await {
            tracing::warn!(%error, keys = batch.len(), "cannot record API key use; will retry");
            for (key, at) in batch {
                self.record_at(key, at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ApiKeyId {
        ApiKeyId::from_uuid(uuid::Uuid::new_v4())
    }

    #[test]
    fn a_use_is_taken_once() {
        let recorder = UsageRecorder::default();
        let (a, b) = (key(), key());
        let before = Utc::now();
        recorder.record(a);
        recorder.record(b);
        let mut taken = recorder.take();
        taken.sort();
        let mut keys: Vec<_> = taken.iter().map(|(key, _)| *key).collect();
        keys.sort();
        let mut expected = vec![a, b];
        expected.sort();
        assert_eq!(keys, expected);
        assert!(taken.iter().all(|(_, at)| *at >= before && *at <= Utc::now()));
        assert!(recorder.take().is_empty(), "taken uses are gone");
    }

    #[test]
    fn a_key_used_again_is_taken_once_with_its_latest_use() {
        let recorder = UsageRecorder::default();
        let a = key();
        let first = Utc::now() - chrono::Duration::seconds(3);
        let latest = Utc::now();
        recorder.record_at(a, latest);
        recorder.record_at(a, first);
        let taken = recorder.take();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].1, latest);
    }

    #[test]
    fn uses_from_every_thread_are_noted() {
        let recorder = UsageRecorder::default();
        let keys: Vec<ApiKeyId> = (0..64).map(|_| key()).collect();
        std::thread::scope(|scope| {
            for chunk in keys.chunks(8) {
                let recorder = &recorder;
                scope.spawn(move || {
                    for _ in 0..100 {
                        for key in chunk {
                            recorder.record(*key);
                        }
                    }
                });
            }
        });
        let mut taken: Vec<ApiKeyId> = recorder.take().into_iter().map(|(key, _)| key).collect();
        taken.sort();
        let mut expected = keys.clone();
        expected.sort();
        assert_eq!(taken, expected);
    }
}
