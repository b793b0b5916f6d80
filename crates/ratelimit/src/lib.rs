#![doc = include_str!("../README.md")]

mod decision;
mod redis_limiter;

pub use redis_limiter::{RedisLimiterError, RedisOptions, RedisRateLimiter, DEFAULT_REDIS_PREFIX};

use convosphere_domain::ports::{RateLimitDecision, RateLimiter, RateSubject};
use convosphere_domain::InfraError;
use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::Quota;
use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::Duration;

/// Idle keys are swept this often unless told otherwise.
pub const DEFAULT_HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);

/// How many budgets are kept in the lock-free table; more (a service has
/// one per plan and one per IP) go to a map behind a lock.
const TABLE_SLOTS: usize = 16;

/// One governor keyed limiter: one GCRA state per key, all with the same quota.
type KeyedLimiter<C> =
    governor::RateLimiter<RateSubject, DashMapStateStore<RateSubject>, C, StateInformationMiddleware>;

/// A budget (requests per minute) and its limiter.
type Budget<C> = (NonZeroU32, KeyedLimiter<C>);

/// A rate limiter for one process: GCRA per key, in memory, with
/// [governor](https://docs.rs/governor).
///
/// Each distinct budget (`per_minute`) gets its own keyed limiter, so one
/// key may be checked against different budgets without them mixing up.
/// Every [`housekeeping_interval`](Self::with_housekeeping_interval), a
/// check first drops the keys whose bucket is full again
/// ([`retain_recent`](Self::retain_recent)), which keeps memory bounded by
/// the keys active in the last minute or so.
///
/// A check writes no memory that every thread shares, other than its key's
/// own state: budgets are found in a table read without a lock, and a key
/// is the [`RateSubject`] itself. Two threads checking different keys do
/// not slow each other down.
///
/// The clock is a type parameter so that tests can drive time with
/// [`governor::clock::FakeRelativeClock`]; production uses governor's default
/// monotonic clock.
pub struct MemoryRateLimiter<C: Clock = DefaultClock> {
    clock: C,
    /// Budgets and their limiters, filled in order, never emptied.
    table: Box<[OnceLock<Budget<C>>; TABLE_SLOTS]>,
    /// Budgets beyond the table's.
    overflow: RwLock<HashMap<NonZeroU32, Arc<KeyedLimiter<C>>>>,
    /// Taken to add a budget.
    adding: Mutex<()>,
    started: C::Instant,
    /// When the last sweep was, in nanoseconds after `started`.
    swept_at: AtomicU64,
    housekeeping_interval: Duration,
}

impl MemoryRateLimiter<DefaultClock> {
    /// A limiter on the monotonic clock, sweeping idle keys every
    /// [`DEFAULT_HOUSEKEEPING_INTERVAL`].
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
            .field("housekeeping_interval", &self.housekeeping_interval)
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
            started: clock.now(),
            clock,
            table: Box::new(std::array::from_fn(|_| OnceLock::new())),
            overflow: RwLock::new(HashMap::new()),
            adding: Mutex::new(()),
            swept_at: AtomicU64::new(0),
            housekeeping_interval: DEFAULT_HOUSEKEEPING_INTERVAL,
        }
    }

    /// Sweeps idle keys this often instead.
    #[must_use]
    pub fn with_housekeeping_interval(mut self, interval: Duration) -> Self {
        self.housekeeping_interval = interval;
        self
    }

    /// Counts one request of `subject` against a budget of `per_minute`.
    ///
    /// The synchronous core of [`RateLimiter::check`]. A budget of zero
    /// refuses everything.
    pub fn decide(&self, subject: RateSubject, per_minute: u32) -> RateLimitDecision {
        let Some(limit) = NonZeroU32::new(per_minute) else {
            return decision::zero_budget();
        };
        self.sweep_when_due();
        let outcome = self.with_limiter(limit, |limiter| limiter.check_key(&subject));
        match outcome {
            Ok(snapshot) => decision::allowed(limit, snapshot.remaining_burst_capacity()),
            Err(not_until) => decision::refused(limit, not_until.wait_time_from(self.clock.now())),
        }
    }

    /// Drops the keys whose bucket is full again (indistinguishable from a
    /// key never seen) and gives the memory back. Runs on its own every
    /// housekeeping interval; call it to sweep now.
    pub fn retain_recent(&self) {
        self.for_each_limiter(|limiter| {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        });
    }

    /// How many keys are remembered, over every budget.
    pub fn len(&self) -> usize {
        let mut keys = 0;
        self.for_each_limiter(|limiter| keys += limiter.len());
        keys
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sweeps if the last sweep is a housekeeping interval ago. One thread
    /// sweeps; the others go on.
    fn sweep_when_due(&self) {
        let now =
            u64::try_from(Duration::from(self.clock.now().duration_since(self.started)).as_nanos()).unwrap_or(u64::MAX);
        let last = self.swept_at.load(Ordering::Relaxed);
        let interval = u64::try_from(self.housekeeping_interval.as_nanos()).unwrap_or(u64::MAX);
        if now.saturating_sub(last) >= interval
            && self
                .swept_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.retain_recent();
        }
    }

    fn for_each_limiter(&self, mut each: impl FnMut(&KeyedLimiter<C>)) {
        for (_, limiter) in self.table.iter().map_while(OnceLock::get) {
            each(limiter);
        }
        let overflow: Vec<_> = self
            .overflow
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        for limiter in overflow {
            each(&limiter);
        }
    }

    /// Runs `f` with the keyed limiter of one budget, made on first use.
    fn with_limiter<R>(&self, limit: NonZeroU32, f: impl FnOnce(&KeyedLimiter<C>) -> R) -> R {
        if let Some(limiter) = self.in_table(limit) {
            return f(limiter);
        }
        let adding = self.adding.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(limiter) = self.in_table(limit) {
            drop(adding);
            return f(limiter);
        }
        let new = || {
            governor::RateLimiter::dashmap_with_clock(Quota::per_minute(limit), self.clock.clone())
                .with_middleware::<StateInformationMiddleware>()
        };
        if let Some(free) = self.table.iter().find(|slot| slot.get().is_none()) {
            let (_, limiter) = free.get_or_init(|| (limit, new()));
            drop(adding);
            return f(limiter);
        }
        drop(adding);
        let limiter = {
            let mut overflow = self.overflow.write().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(overflow.entry(limit).or_insert_with(|| Arc::new(new())))
        };
        f(&limiter)
    }

    /// The limiter of a budget in the table, read without a lock.
    fn in_table(&self, limit: NonZeroU32) -> Option<&KeyedLimiter<C>> {
        self.table
            .iter()
            .map_while(OnceLock::get)
            .find(|(budget, _)| *budget == limit)
            .map(|(_, limiter)| limiter)
    }
}

impl<C> RateLimiter for MemoryRateLimiter<C>
where
    C: Clock + Clone + Send + Sync,
    C::Instant: Reference + Send + Sync,
{
    fn check(
        &self,
        subject: RateSubject,
        per_minute: u32,
    ) -> impl Future<Output = Result<RateLimitDecision, InfraError>> + Send {
        std::future::ready(Ok(self.decide(subject, per_minute)))
    }
}
