//! The body of a key's or an account's usage.

use super::rfc3339;
use chrono::{DateTime, Utc};
use convosphere_domain::usage::{Usage, UsageBucket, UsageCounts};
use serde::Serialize;

/// One bucket's counts.
#[derive(Serialize, utoipa::ToSchema)]
pub struct UsageBucketBody {
    /// Its start (UTC, on the hour or the day).
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub start: DateTime<Utc>,
    /// Requests let through.
    pub allowed: u64,
    /// Requests refused with `rate_limited`.
    pub rate_limited: u64,
    /// Requests refused with `insufficient_scope`.
    pub insufficient_scope: u64,
    /// The most requests of one minute in the bucket (with several
    /// instances: of the busiest instance).
    pub peak_per_minute: u64,
}

/// The sums over the range.
#[derive(Serialize, utoipa::ToSchema)]
pub struct UsageTotalsBody {
    /// Requests let through.
    pub allowed: u64,
    /// Requests refused with `rate_limited`.
    pub rate_limited: u64,
    /// Requests refused with `insufficient_scope`.
    pub insufficient_scope: u64,
}

/// `Usage`: the buckets of a range, empty ones included.
#[derive(Serialize, utoipa::ToSchema)]
pub struct UsageBody {
    /// `hour` or `day`.
    pub granularity: &'static str,
    /// The start of the first bucket.
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub from: DateTime<Utc>,
    /// The end of the last bucket.
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub to: DateTime<Utc>,
    /// The plan's requests per minute.
    pub limit_per_minute: u32,
    /// Every bucket of the range, oldest first.
    pub buckets: Vec<UsageBucketBody>,
    /// The sums over the range.
    pub totals: UsageTotalsBody,
    /// A key's: the client IP of its last use, or `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub last_used_ip: Option<Option<String>>,
    /// A key's: the `User-Agent` of its last use, or `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub last_used_user_agent: Option<Option<String>>,
}

fn totals(counts: &UsageCounts) -> UsageTotalsBody {
    UsageTotalsBody {
        allowed: counts.allowed,
        rate_limited: counts.rate_limited,
        insufficient_scope: counts.insufficient_scope,
    }
}

impl From<&UsageBucket> for UsageBucketBody {
    fn from(bucket: &UsageBucket) -> Self {
        Self {
            start: bucket.start,
            allowed: bucket.counts.allowed,
            rate_limited: bucket.counts.rate_limited,
            insufficient_scope: bucket.counts.insufficient_scope,
            peak_per_minute: bucket.counts.peak_per_minute,
        }
    }
}

impl From<&Usage> for UsageBody {
    fn from(usage: &Usage) -> Self {
        Self {
            granularity: usage.range.granularity.as_str(),
            from: usage.range.from,
            to: usage.range.to,
            limit_per_minute: usage.limit_per_minute,
            buckets: usage.buckets.iter().map(UsageBucketBody::from).collect(),
            totals: totals(&usage.totals),
            last_used_ip: None,
            last_used_user_agent: None,
        }
    }
}
