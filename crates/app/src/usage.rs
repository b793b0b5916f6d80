//! `last_used_at` of API keys, written in batches every two seconds instead
//! of once per request (the contract allows five).

use chrono::{DateTime, Utc};
use convosphere_domain::api_key::ApiKeyId;
use convosphere_domain::ports::ApiKeyRepository;
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often recorded uses are written.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(2);

/// A thread notes a busy key's use at most this often: `last_used_at`
/// is then at most this much older than the key's last use, besides the
/// flush interval.
pub const RECORD_INTERVAL: Duration = Duration::from_millis(500);

/// Uses of API keys not yet written.
pub struct UsageRecorder {
    /// Tells recorders apart in the threads' memories.
    id: u64,
    pending: Mutex<HashMap<ApiKeyId, DateTime<Utc>>>,
}

impl Default for UsageRecorder {
    fn default() -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            pending: Mutex::default(),
        }
    }
}

thread_local! {
    /// The last use this thread noted: recorder, key, when.
    static LAST_NOTED: Cell<Option<(u64, ApiKeyId, Instant)>> = const { Cell::new(None) };
}

impl UsageRecorder {
    /// Notes that a key was used now. A key that this thread noted less than
    /// [`RECORD_INTERVAL`] ago is not noted again: a gateway's calls with one
    /// key, on every worker, would otherwise all take one lock.
    pub fn record(&self, key: ApiKeyId) {
        let now = Instant::now();
        let noted_lately = LAST_NOTED.get().is_some_and(|(recorder, last_key, at)| {
            recorder == self.id && last_key == key && now.saturating_duration_since(at) < RECORD_INTERVAL
        });
        if noted_lately {
            return;
        }
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(key, Utc::now());
        }
        LAST_NOTED.set(Some((self.id, key, now)));
    }

    /// Takes every pending use.
    pub fn take(&self) -> Vec<(ApiKeyId, DateTime<Utc>)> {
        self.pending.lock().map(|mut p| p.drain().collect()).unwrap_or_default()
    }

    /// Writes the pending uses; keeps them for the next try on failure.
    pub async fn flush<R: ApiKeyRepository>(&self, store: &R) {
        let batch = self.take();
        if batch.is_empty() {
            return;
        }
        if let Err(error) = store.record_api_key_use(&batch).await {
            tracing::warn!(%error, keys = batch.len(), "cannot record API key use; will retry");
            if let Ok(mut pending) = self.pending.lock() {
                for (key, at) in batch {
                    let entry = pending.entry(key).or_insert(at);
                    *entry = (*entry).max(at);
                }
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
    fn a_key_used_again_at_once_is_noted_once_then_again_after_the_interval() {
        let recorder = UsageRecorder::default();
        let a = key();
        recorder.record(a);
        assert_eq!(recorder.take().len(), 1);
        recorder.record(a);
        assert!(recorder.take().is_empty(), "noted moments ago on this thread");
        std::thread::sleep(RECORD_INTERVAL);
        recorder.record(a);
        assert_eq!(recorder.take().len(), 1, "noted again after the interval");
    }

    #[test]
    fn recorders_and_threads_do_not_share_the_memory() {
        let (first, second) = (UsageRecorder::default(), UsageRecorder::default());
        let a = key();
        first.record(a);
        second.record(a);
        assert_eq!(first.take().len(), 1);
        assert_eq!(second.take().len(), 1, "another recorder notes the same key");
        std::thread::scope(|scope| {
            scope.spawn(|| first.record(a));
        });
        assert_eq!(first.take().len(), 1, "another thread notes it too");
    }
}
