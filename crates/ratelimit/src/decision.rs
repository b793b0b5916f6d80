//! The decisions both limiters give, from the same numbers and formulas.

use convosphere_domain::ports::RateLimitDecision;
use governor::Quota;
use std::num::NonZeroU32;
use std::time::Duration;

/// The emission interval of a budget: 60 s / N, rounded down to the
/// nanosecond, exactly as governor computes it.
pub(crate) fn period(limit: NonZeroU32) -> Duration {
    Quota::per_minute(limit).replenish_interval()
}

/// A budget of zero refuses everything.
pub(crate) fn zero_budget() -> RateLimitDecision {
    RateLimitDecision {
        allowed: false,
        limit: 0,
        remaining: 0,
        reset_after: Duration::from_secs(60),
        retry_after: Some(Duration::from_secs(60)),
    }
}

/// An allowed request with `remaining` whole cells left.
pub(crate) fn allowed(limit: NonZeroU32, remaining: u32) -> RateLimitDecision {
    let remaining = remaining.min(limit.get() - 1);
    RateLimitDecision {
        allowed: true,
        limit: limit.get(),
        remaining,
        // Whole remaining cells, not GCRA's theoretical arrival time: the
        // time to refill the spent cells is never sooner than the bucket is
        // really full, and at most one period later.
        reset_after: period(limit).saturating_mul(limit.get() - remaining),
        retry_after: None,
    }
}

/// A refused request: the next cell comes after `wait`.
pub(crate) fn refused(limit: NonZeroU32, wait: Duration) -> RateLimitDecision {
    RateLimitDecision {
        allowed: false,
        limit: limit.get(),
        remaining: 0,
        // The next cell comes after `wait`, the other limit - 1 one period apart.
        reset_after: wait.saturating_add(period(limit).saturating_mul(limit.get() - 1)),
        retry_after: Some(wait),
    }
}
