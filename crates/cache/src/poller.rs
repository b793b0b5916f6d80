//! Keeps a [`CallerCache`] cache current with the invalidation feed.

use crate::CallerCache;
use convosphere_domain::ports::{CredentialCache, InvalidationFeed};
use std::sync::Arc;
use std::time::Duration;

/// How often the invalidation feed is read: every instance forgets a
/// change made elsewhere within about this long.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Reads the feed from its newest entry on, every [`POLL_INTERVAL`], and
/// makes `cache` forget what each entry names. While the feed cannot be
/// read the cache is emptied on every attempt (the next requests are
/// checked in full), and once more when it answers again.
pub async fn spawn_invalidation_poller<F>(feed: F, cache: Arc<CallerCache>) -> tokio::task::JoinHandle<()>
where
    F: InvalidationFeed + 'static,
{
    let start = feed.latest_invalidation().await;
    if let Err(error) = &start {
        tracing::warn!(%error, "cannot read the invalidation feed; caches emptied until it answers");
    }
    tokio::spawn(async move {
        let mut failing = start.is_err();
        let mut cursor = start.ok();
        loop {
            tokio::time::sleep(POLL_INTERVAL).await;
            let result = match cursor {
                None => feed.latest_invalidation().await.map(|latest| (latest, Vec::new())),
                Some(cursor) => feed.invalidations_since(cursor).await,
            };
            match result {
                Ok((next, invalidations)) => {
                    if failing {
                        // What changed while the feed was unreadable is unknown.
                        cache.clear();
                        tracing::info!("the invalidation feed answers again");
                        failing = false;
                    }
                    for invalidation in &invalidations {
                        cache.forget(invalidation);
                    }
                    cursor = Some(next);
                }
                Err(error) => {
                    cache.clear();
                    if !failing {
                        tracing::warn!(%error, "cannot read the invalidation feed; caches emptied");
                    }
                    failing = true;
                }
            }
        }
    })
}
