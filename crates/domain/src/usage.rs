//! How API keys and accounts are used: what the gateway answered them,
//! counted by hour and by day, and the client networks a key was used from.
//!
//! Counts are kept by the instances in memory and added to stored buckets
//! every few seconds ([`UsageDelta`]); [`Usage`] is what a reader gets back
//! for a [`UsageRange`], every bucket of the range included, empty or not.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use convosphere_domain::usage::{Granularity, UsageRange};
//!
//! let now = Utc.with_ymd_and_hms(2026, 3, 1, 12, 30, 0).unwrap();
//! let range = UsageRange::parse(None, None, Some("hour"), now).unwrap();
//! assert_eq!(range.granularity, Granularity::Hour);
//! assert_eq!(range.buckets().count(), 24); // the last 24 hours, this one included
//! assert!(UsageRange::parse(Some("2026-01-01T00:00:00Z"), None, Some("hour"), now).is_err()); // over 31 days
//! ```

use crate::api_key::ApiKeyId;
use crate::{FieldError, UserId};
use chrono::{DateTime, Duration, DurationRound, Utc};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The most hourly buckets one answer holds (31 days).
pub const MAX_HOURS: i64 = 31 * 24;
/// The most daily buckets one answer holds.
pub const MAX_DAYS: i64 = 400;

/// The size of a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum Granularity {
    /// One hour (UTC).
    Hour,
    /// One day (UTC).
    Day,
}

impl Granularity {
    /// `hour` or `day`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The length of one bucket.
    pub fn step(self) -> Duration {
        match self {
            Granularity::Hour => Duration::hours(1),
            Granularity::Day => Duration::days(1),
        }
    }

    /// The start of the bucket that holds `at`.
    pub fn floor(self, at: DateTime<Utc>) -> DateTime<Utc> {
        at.duration_trunc(self.step()).unwrap_or(at)
    }
}

/// What the gateway answered a request with a valid credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UsageOutcome {
    /// Let through.
    Allowed,
    /// Refused: the plan's budget was spent.
    RateLimited,
    /// Refused: the credential lacks a scope asked for.
    InsufficientScope,
}

/// Requests counted in one bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageCounts {
    /// Let through.
    pub allowed: u64,
    /// Refused with `rate_limited`.
    pub rate_limited: u64,
    /// Refused with `insufficient_scope`.
    pub insufficient_scope: u64,
    /// The most requests of one minute in the bucket (as one instance saw
    /// them: with several instances, the busiest instance's minute).
    pub peak_per_minute: u64,
}

impl UsageCounts {
    /// One request of `outcome`.
    pub fn one(outcome: UsageOutcome) -> Self {
        let mut counts = Self::default();
        counts.count(outcome, 1);
        counts
    }

    /// Adds `n` requests of `outcome` (the peak is left alone).
    pub fn count(&mut self, outcome: UsageOutcome, n: u64) {
        match outcome {
            UsageOutcome::Allowed => self.allowed += n,
            UsageOutcome::RateLimited => self.rate_limited += n,
            UsageOutcome::InsufficientScope => self.insufficient_scope += n,
        }
    }

    /// Every request, allowed or refused.
    pub fn requests(&self) -> u64 {
        self.allowed + self.rate_limited + self.insufficient_scope
    }

    /// Both buckets' counts summed; the greater peak.
    pub fn merge(&mut self, other: &UsageCounts) {
        self.allowed += other.allowed;
        self.rate_limited += other.rate_limited;
        self.insufficient_scope += other.insufficient_scope;
        self.peak_per_minute = self.peak_per_minute.max(other.peak_per_minute);
    }
}

/// The counts of one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageBucket {
    /// Its start (UTC, on the hour or the day).
    pub start: DateTime<Utc>,
    /// What was counted in it.
    pub counts: UsageCounts,
}

/// Counts to add to the hour of `hour` (and its day) of a key or, with no
/// key, of the whole account (every key and session: a request with a key
/// is counted for both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageDelta {
    /// The account.
    pub user: UserId,
    /// The key, when an API key made the requests.
    pub key: Option<ApiKeyId>,
    /// The start of the hour.
    pub hour: DateTime<Utc>,
    /// What to add; `peak_per_minute` is kept if greater than the stored one.
    pub counts: UsageCounts,
}

/// Whose usage is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageSubject {
    /// Every key and session of an account.
    Account(UserId),
    /// One key.
    Key(ApiKeyId),
}

/// The buckets asked for: `[from, to)`, both on a bucket's edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageRange {
    /// The start of the first bucket.
    pub from: DateTime<Utc>,
    /// The end of the last bucket.
    pub to: DateTime<Utc>,
    /// The bucket size.
    pub granularity: Granularity,
}

impl UsageRange {
    /// The range of a query's `from`, `to` (RFC 3339) and `granularity`
    /// (`hour` or `day`, the default). `to` defaults to now, `from` to 24
    /// hours or 30 days before `to`; both are widened to whole buckets, the
    /// bucket that holds `to` included. At most [`MAX_HOURS`] hours or
    /// [`MAX_DAYS`] days.
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        granularity: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let granularity = match granularity {
            None | Some("day") => Granularity::Day,
            Some("hour") => Granularity::Hour,
            Some(_) => {
                errors.push(FieldError::new("granularity", "invalid", "expected hour or day"));
                Granularity::Day
            }
        };
        let mut time = |field: &'static str, raw: Option<&str>| {
            let parsed = DateTime::parse_from_rfc3339(raw?).map(|at| at.with_timezone(&Utc));
            if parsed.is_err() {
                errors.push(FieldError::new(field, "invalid_time", "expected an RFC 3339 time"));
            }
            parsed.ok()
        };
        let (from, to) = (time("from", from), time("to", to));
        if !errors.is_empty() {
            return Err(errors);
        }
        let default_span = match granularity {
            Granularity::Hour => Duration::hours(24),
            Granularity::Day => Duration::days(30),
        };
        let last = Self::ending_at(to.unwrap_or(now), default_span, granularity);
        let (from, to) = (from.map_or(last.from, |from| granularity.floor(from)), last.to);
        let (most, unit) = match granularity {
            Granularity::Hour => (MAX_HOURS, "31 days by hour"),
            Granularity::Day => (MAX_DAYS, "400 days by day"),
        };
        if from >= to {
            return Err(vec![FieldError::new("from", "invalid", "must be before to")]);
        }
        if (to - from).num_seconds() / granularity.step().num_seconds() > most {
            return Err(vec![FieldError::new("from", "too_long", format!("at most {unit}"))]);
        }
        Ok(Self { from, to, granularity })
    }

    /// The `span` (whole buckets) that ends with the bucket holding `at`.
    ///
    /// ```
    /// use chrono::{Duration, TimeZone, Utc};
    /// use convosphere_domain::usage::{Granularity, UsageRange};
    ///
    /// let at = Utc.with_ymd_and_hms(2026, 3, 10, 12, 30, 0).unwrap();
    /// let week = UsageRange::ending_at(at, Duration::days(7), Granularity::Day);
    /// assert_eq!(week.to, Utc.with_ymd_and_hms(2026, 3, 11, 0, 0, 0).unwrap());
    /// assert_eq!(week.from, Utc.with_ymd_and_hms(2026, 3, 4, 0, 0, 0).unwrap());
    /// ```
    pub fn ending_at(at: DateTime<Utc>, span: Duration, granularity: Granularity) -> Self {
        let to = granularity.floor(at) + granularity.step();
        Self {
            from: granularity.floor(to - span),
            to,
            granularity,
        }
    }

    /// The start of every bucket, in order.
    pub fn buckets(&self) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        let step = self.granularity.step();
        std::iter::successors(Some(self.from), move |start| Some(*start + step)).take_while(|start| *start < self.to)
    }
}

/// What a reader gets: every bucket of the range, with its counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// The range.
    pub range: UsageRange,
    /// The plan's requests per minute, for scale.
    pub limit_per_minute: u32,
    /// Every bucket of the range, empty ones included.
    pub buckets: Vec<UsageBucket>,
    /// The range's sums (and its busiest minute).
    pub totals: UsageCounts,
}

impl Usage {
    /// Every bucket of `range`, from the stored ones (in any order; a
    /// bucket outside the range is left out).
    pub fn new(range: UsageRange, limit_per_minute: u32, stored: &[UsageBucket]) -> Self {
        let mut totals = UsageCounts::default();
        let buckets = range
            .buckets()
            .map(|start| {
                let mut counts = UsageCounts::default();
                for bucket in stored.iter().filter(|b| b.start == start) {
                    counts.merge(&bucket.counts);
                }
                totals.merge(&counts);
                UsageBucket { start, counts }
            })
            .collect();
        Self {
            range,
            limit_per_minute,
            buckets,
            totals,
        }
    }
}

/// The client network a key is used from, as unusual use is told: the /24
/// of an IPv4 address, the /48 of an IPv6 one (an IPv4-mapped IPv6 address
/// is its IPv4 address).
///
/// ```
/// use convosphere_domain::usage::KeyNetwork;
/// let a = KeyNetwork::of("203.0.113.9".parse().unwrap());
/// assert_eq!(a.to_string(), "203.0.113.0/24");
/// assert_eq!(a, KeyNetwork::of("::ffff:203.0.113.200".parse().unwrap()));
/// assert_eq!(KeyNetwork::of("2001:db8:7:1::1".parse().unwrap()).to_string(), "2001:db8:7::/48");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyNetwork(IpAddr);

impl KeyNetwork {
    /// The network of a client address.
    pub fn of(ip: IpAddr) -> Self {
        Self(match ip {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(v4.to_bits() & 0xffff_ff00)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(Ipv4Addr::from(v4.to_bits() & 0xffff_ff00)),
                None => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !(u128::MAX >> 48))),
            },
        })
    }
}

impl fmt::Display for KeyNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}/24"),
            IpAddr::V6(v6) => write!(f, "{v6}/48"),
        }
    }
}

/// A network a key was used from, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyNetworkUse {
    /// `203.0.113.0/24`, `2001:db8:7::/48`.
    pub network: String,
    /// The first use from it.
    pub first_seen: DateTime<Utc>,
    /// The latest use from it (as the instances noted it).
    pub last_seen: DateTime<Utc>,
}

/// A key's use as the recorder saw it last in a flush interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUse {
    /// The key.
    pub key: ApiKeyId,
    /// When.
    pub at: DateTime<Utc>,
    /// The client's IP (through trusted proxies), when known.
    pub ip: Option<String>,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
}

/// Something about a key's use to review for unusual use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeySighting {
    /// Used from a network this instance has not seen it use lately.
    Network {
        /// The key.
        key: ApiKeyId,
        /// Its owner.
        user: UserId,
        /// The network.
        network: KeyNetwork,
        /// When.
        at: DateTime<Utc>,
    },
    /// Answered `rate_limited` (the first time today on this instance).
    RateLimited {
        /// The key.
        key: ApiKeyId,
        /// Its owner.
        user: UserId,
        /// When.
        at: DateTime<Utc>,
    },
}

/// What an instance's recorder hands over every few seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageBatch {
    /// Counts to add.
    pub deltas: Vec<UsageDelta>,
    /// The latest use of each key.
    pub uses: Vec<KeyUse>,
    /// Uses to review for unusual use.
    pub sightings: Vec<KeySighting>,
}

impl UsageBatch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.deltas.is_empty() && self.uses.is_empty() && self.sightings.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, day, hour, 0, 0).unwrap()
    }

    #[test]
    fn a_range_covers_whole_buckets_up_to_the_one_that_holds_to() {
        let now = at(10, 12) + Duration::minutes(17);
        let range = UsageRange::parse(Some("2026-03-09T10:45:00Z"), None, Some("hour"), now).unwrap();
        assert_eq!((range.from, range.to), (at(9, 10), at(10, 13)));
        assert_eq!(range.buckets().count(), 27);
        let days = UsageRange::parse(None, Some("2026-03-10T00:00:00+02:00"), None, now).unwrap();
        assert_eq!(days.granularity, Granularity::Day);
        assert_eq!(days.to, at(10, 0), "22:00 UTC on the 9th is in the 9th's bucket");
        assert_eq!(days.buckets().count(), 30);
    }

    #[test]
    fn bad_ranges_are_refused_with_the_field() {
        let now = at(10, 12);
        let field = |from, to, granularity| UsageRange::parse(from, to, granularity, now).unwrap_err()[0].field;
        assert_eq!(field(None, None, Some("week")), "granularity");
        assert_eq!(field(Some("yesterday"), None, None), "from");
        assert_eq!(field(None, Some("2026-13-01T00:00:00Z"), None), "to");
        assert_eq!(field(Some("2026-03-11T00:00:00Z"), None, Some("hour")), "from");
        assert_eq!(field(Some("2026-02-07T00:00:00Z"), None, Some("hour")), "from");
        assert!(UsageRange::parse(Some("2026-02-08T00:00:00Z"), None, Some("hour"), now).is_ok());
        assert!(UsageRange::parse(Some("2025-02-03T00:00:00Z"), None, None, now).is_err());
        assert!(UsageRange::parse(Some("2025-02-04T00:00:00Z"), None, None, now).is_ok());
    }

    #[test]
    fn usage_has_every_bucket_and_sums_the_stored_ones() {
        let range = UsageRange::parse(None, None, Some("hour"), at(10, 5)).unwrap();
        let stored = [
            UsageBucket {
                start: at(10, 3),
                counts: UsageCounts {
                    allowed: 5,
                    rate_limited: 1,
                    insufficient_scope: 0,
                    peak_per_minute: 4,
                },
            },
            UsageBucket {
                start: at(10, 3),
                counts: UsageCounts {
                    allowed: 2,
                    peak_per_minute: 2,
                    ..Default::default()
                },
            },
            UsageBucket {
                start: at(1, 3),
                counts: UsageCounts::one(UsageOutcome::Allowed),
            },
        ];
        let usage = Usage::new(range, 100, &stored);
        assert_eq!(usage.buckets.len(), 24);
        let third = usage.buckets.iter().find(|b| b.start == at(10, 3)).unwrap();
        assert_eq!(
            (
                third.counts.allowed,
                third.counts.rate_limited,
                third.counts.peak_per_minute
            ),
            (7, 1, 4)
        );
        assert_eq!(usage.totals.requests(), 8, "the bucket outside the range is left out");
        assert_eq!(usage.buckets.iter().filter(|b| b.counts.requests() == 0).count(), 23);
    }

    #[test]
    fn networks_are_a_slash_24_or_a_slash_48() {
        let net = |ip: &str| KeyNetwork::of(ip.parse().unwrap());
        assert_eq!(net("198.51.100.1"), net("198.51.100.254"));
        assert_ne!(net("198.51.100.1"), net("198.51.101.1"));
        assert_eq!(net("2001:db8:aa:1::1"), net("2001:db8:aa:ffff::2"));
        assert_ne!(net("2001:db8:aa::1"), net("2001:db8:ab::1"));
    }
}
