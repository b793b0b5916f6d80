#![doc = include_str!("../README.md")]

mod decision;
mod redis_limiter;

pub use redis_limiter::{RedisLimiterError, RedisOptions, RedisRateLimiter, DEFAULT_REDIS_PREFIX};

use convosphere_domain::ports::{RateLimitDecision, RateLimiter};
use convosphere_domain::InfraError;
use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::Quota;
use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

/// Idle keys are swept after this many checks unless told otherwise.
pub const DEFAULT_HOUSEKEEPING_EVERY: u64 = 1024;

/// One governor keyed limiter: one GCRA state per key, all with the same quota.
type KeyedLimiter<C> = governor::RateLimiter<String, DashMapStateStore<String>, C, StateInformationMiddleware>;

/// A rate limiter for one process: GCRA per key, in memory, with
/// [governor](https://docs.rs/governor).
///
/// Each distinct budget (`per_minute`) gets its own keyed limiter, so one
/// key may be checked against different budgets without them mixing up.
/// Every [`housekeeping_every`](Self::with_housekeeping_every) checks, keys
/// whose bucket is full again are dropped ([`retain_recent`](Self::retain_recent)),
/// which keeps memory bounded by the keys active in the last minute or so.
///
/// The clock is a type parameter so that tests can drive time with
/// [`governor::clock::FakeRelativeClock`]; production uses governor's default
/// monotonic clock.
pub struct MemoryRateLimiter<C: Clock = DefaultClock> {
    clock: C,
    limiters: RwLock<HashMap<NonZeroU32, Arc<KeyedLimiter<C>>>>,
    checks: AtomicU64,
    housekeeping_every: u64,
}

impl MemoryRateLimiter<DefaultClock> {
    /// A limiter on the monotonic clock, sweeping idle keys every
    /// [`DEFAULT_HOUSEKEEPING_EVERY`] checks.
    pub fn new() -> Self {
        Self::with_clock(DefaultClock::default())
    }
}

impl Default for MemoryRateLimiter<DefaultClock> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Clock + Clone> std::fmt::Debug for MemoryRateLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryRateLimiter")
            .field("keys", &self.len())
            .field("housekeeping_every", &self.housekeeping_every)
            .finish()
    }
}

impl<C> MemoryRateLimiter<C>
where
    C: Clock + Clone,
{
    /// A limiter on the given clock (tests pass a
    /// [`FakeRelativeClock`](governor::clock::FakeRelativeClock)).
    pub fn with_clock(clock: C) -> Self {
        Self {
            clock,
            limiters: RwLock::new(HashMap::new()),
            checks: AtomicU64::new(0),
            housekeeping_every: DEFAULT_HOUSEKEEPING_EVERY,
        }
    }

    /// Sweeps idle keys every `checks` checks instead (at least every check).
    #[must_use]
    pub fn with_housekeeping_every(mut self, checks: u64) -> Self {
        self.housekeeping_every = checks.max(1);
        self
    }

    /// Counts one request for `key` against a budget of `per_minute`.
    ///
    /// The synchronous core of [`RateLimiter::check`]. A budget of zero
    /// refuses everything.
    pub fn decide(&self, key: &str, per_minute: u32) -> RateLimitDecision {
        let Some(limit) = NonZeroU32::new(per_minute) else {
            return decision::zero_budget();
        };
        let limiter = self.limiter(limit);
        let outcome = limiter.check_key(&key.to_owned());
        drop(limiter);
        if self.checks.fetch_add(1, Ordering::Relaxed) % self.housekeeping_every == self.housekeeping_every - 1 {
            self.retain_recent();
        }

        match outcome {
            Ok(snapshot) => decision::allowed(limit, snapshot.remaining_burst_capacity()),
            Err(not_until) => decision::refused(limit, not_until.wait_time_from(self.clock.now())),
        }
    }

    /// Drops the keys whose bucket is full again (indistinguishable from a
    /// key never seen) and gives the memory back. Runs on its own every
    /// few checks; call it to sweep now.
    pub fn retain_recent(&self) {
        for limiter in self.snapshot() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// How many keys are remembered, over every budget.
    pub fn len(&self) -> usize {
        self.snapshot().iter().map(|limiter| limiter.len()).sum()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn snapshot(&self) -> Vec<Arc<KeyedLimiter<C>>> {
        let limiters = self.limiters.read().unwrap_or_else(PoisonError::into_inner);
        limiters.values().cloned().collect()
    }

    /// The keyed limiter of one budget, made on first use.
    fn limiter(&self, limit: NonZeroU32) -> Arc<KeyedLimiter<C>> {
        if let Some(limiter) = self.limiters.read().unwrap_or_else(PoisonError::into_inner).get(&limit) {
            return Arc::clone(limiter);
        }
        let mut limiters = self.limiters.write().unwrap_or_else(PoisonError::into_inner);
        let limiter = limiters.entry(limit).or_insert_with(|| {
            Arc::new(
                governor::RateLimiter::dashmap_with_clock(Quota::per_minute(limit), self.clock.clone())
                    .with_middleware::<StateInformationMiddleware>(),
            )
        });
        Arc::clone(limiter)
    }
}

impl<C> RateLimiter for MemoryRateLimiter<C>
where
    C: Clock + Clone + Send + Sync,
    C::Instant: Reference + Send + Sync,
{
    fn check(&self, key: &str, per_minute: u32) -> impl Future<Output = Result<RateLimitDecision, InfraError>> + Send {
        std::future::ready(Ok(self.decide(key, per_minute)))
    }
}
