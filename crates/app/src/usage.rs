//! `last_used_at` of API keys, written in batches every two seconds instead
//! of once per request (the contract allows five).

use chrono::{DateTime, Utc};
use convosphere_domain::api_key::ApiKeyId;
use convosphere_domain::ports::ApiKeyRepository;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// How often recorded uses are written.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(2);

/// Uses of API keys not yet written.
#[derive(Default)]
pub struct UsageRecorder {
    pending: Mutex<HashMap<ApiKeyId, DateTime<Utc>>>,
}

impl UsageRecorder {
    /// Notes that a key was used now.
    pub fn record(&self, key: ApiKeyId) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(key, Utc::now());
        }
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
