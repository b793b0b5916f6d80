//! A bounded map whose entries expire a fixed time after they were put in.

use std::hash::Hash;
use std::time::{Duration, Instant};

/// A bounded concurrent cache whose entries expire `ttl` after they were
/// inserted (quick_cache underneath, which has no expiry of its own).
pub struct TtlCache<K, V> {
    entries: quick_cache::sync::Cache<K, (V, Instant)>,
    ttl: Duration,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    /// At most about `capacity` entries, each kept at most `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            entries: quick_cache::sync::Cache::new(capacity),
            ttl,
        }
    }

    /// A copy of the entry, unless it is missing or has expired.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        Q: Hash + quick_cache::Equivalent<K> + ?Sized,
    {
        let (value, expires) = self.entries.get(key)?;
        if Instant::now() >= expires {
            self.entries.remove(key);
            return None;
        }
        Some(value)
    }

    /// The entry, or else the one `make` gives, added for `ttl` from now.
    /// Callers that ask for a missing key at once share one `make`'s value.
    pub fn get_with(&self, key: K, make: impl FnOnce() -> V) -> V {
        if let Some(value) = self.get(&key) {
            return value;
        }
        let made = self.entries.get_or_insert_with(&key, || {
            Ok::<_, std::convert::Infallible>((make(), Instant::now() + self.ttl))
        });
        match made {
            Ok((value, _)) => value,
            Err(never) => match never {},
        }
    }

    /// Adds or replaces an entry, for `ttl` from now.
    pub fn insert(&self, key: K, value: V) {
        self.entries.insert(key, (value, Instant::now() + self.ttl));
    }

    /// Forgets an entry.
    pub fn invalidate<Q>(&self, key: &Q)
    where
        Q: Hash + quick_cache::Equivalent<K> + ?Sized,
    {
        self.entries.remove(key);
    }

    /// How many entries it holds (expired ones not yet read included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_lives_until_its_ttl_and_not_after() {
        let cache = TtlCache::new(100, Duration::from_millis(50));
        cache.insert("a".to_owned(), 1);
        cache.insert("b".to_owned(), 2);
        assert_eq!(cache.get("a"), Some(1));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.get("a"), None);
        assert_eq!(cache.get("b"), None);
        // A new insert starts a new lifetime.
        cache.insert("a".to_owned(), 3);
        assert_eq!(cache.get("a"), Some(3));
        cache.invalidate("a");
        assert_eq!(cache.get("a"), None);
    }

    #[test]
    fn callers_that_ask_at_once_share_one_value() {
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::Arc;
        let cache = Arc::new(TtlCache::new(100, Duration::from_secs(60)));
        let made = Arc::new(AtomicU64::new(0));
        let values: Vec<u64> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let (cache, made) = (Arc::clone(&cache), Arc::clone(&made));
                    scope.spawn(move || {
                        cache.get_with(7u8, || {
                            std::thread::sleep(Duration::from_millis(20));
                            made.fetch_add(1, Ordering::SeqCst) + 100
                        })
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(made.load(Ordering::SeqCst), 1);
        assert!(values.iter().all(|&v| v == 100), "{values:?}");
    }

    #[test]
    fn the_cache_stays_near_its_capacity_and_keeps_what_is_read_again() {
        let cache = TtlCache::new(1_000, Duration::from_secs(60));
        cache.insert(u64::MAX, "hot");
        for key in 0..50_000u64 {
            cache.insert(key, "once");
            // The hot entry is read as often as a real credential would be.
            if key % 10 == 0 {
                assert_eq!(cache.get(&u64::MAX), Some("hot"), "evicted after {key} one-off keys");
            }
        }
        assert!(cache.len() <= 1_100, "{} entries", cache.len());
    }
}
