//! [`RedisRateLimiter`]: the same GCRA as [`MemoryRateLimiter`](crate::MemoryRateLimiter),
//! kept in Redis so that every instance of the service shares one budget per key.

use crate::decision;
use convosphere_domain::ports::{RateLimitDecision, RateLimiter, RateSubject};
use convosphere_domain::InfraError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::io::tcp::TcpSettings;
use redis::{Client, RedisError, Script};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// The prefix of every key the limiter writes: `convosphere:rl:<budget>:<key>`.
pub const DEFAULT_REDIS_PREFIX: &str = "convosphere:rl:";

/// The GCRA step, atomic in Redis (`EVALSHA`, loaded again if Redis forgot it).
static GCRA: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("gcra.lua")));

/// After this many failed calls in a row the connection is dropped and a new
/// one made, in case the old one is stuck where the client cannot tell.
const FAILURES_BEFORE_NEW_CONNECTION: u32 = 3;

/// How a [`RedisRateLimiter`] talks to Redis and how it fails.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisOptions {
    /// Put before every key ([`DEFAULT_REDIS_PREFIX`]); tests use their own.
    pub prefix: String,
    /// The longest a check waits for Redis, connecting included (250 ms).
    /// Past it the check fails open.
    pub timeout: Duration,
    /// After a failure, checks fail open at once without asking Redis for
    /// this long (1 s), so that a dead or hanging Redis costs one timeout a
    /// second, not one per request. Zero asks Redis every time.
    pub pause_after_failure: Duration,
    /// At most one warning in the log per this period while Redis fails (30 s).
    pub warn_every: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_REDIS_PREFIX.to_owned(),
            timeout: Duration::from_millis(250),
            pause_after_failure: Duration::from_secs(1),
            warn_every: Duration::from_secs(30),
        }
    }
}

/// Why Redis did not answer a check.
#[derive(Debug, thiserror::Error)]
pub enum RedisLimiterError {
    /// A bad URL, a refused connection, an error reply…
    #[error("rate-limit store: {0}")]
    Redis(#[from] RedisError),
    /// No answer in time.
    #[error("rate-limit store: no answer within {0:?}")]
    Timeout(Duration),
}

/// A rate limiter shared by every instance: GCRA per key in Redis, giving
/// the same answers as [`MemoryRateLimiter`](crate::MemoryRateLimiter).
///
/// One Lua script does each check atomically on the Redis clock. When Redis
/// cannot be reached in time, the check **fails open**: the request is
/// allowed, the failure counted in [`failures`](Self::failures) and a warning
/// logged at most once per [`RedisOptions::warn_every`].
pub struct RedisRateLimiter {
    client: Client,
    options: RedisOptions,
    /// Reconnects by itself after a dropped connection; made on first use.
    connection: RwLock<Option<ConnectionManager>>,
    /// One task connects at a time.
    connecting: tokio::sync::Mutex<()>,
    started: Instant,
    /// Until when (ms since `started`) checks fail open without asking.
    paused_until: AtomicU64,
    failures: AtomicU64,
    failures_in_a_row: AtomicU32,
    healthy: AtomicBool,
    /// When the last warning was logged and the failure count then.
    last_warning: Mutex<Option<(Instant, u64)>>,
    /// Whether a warning was logged since Redis last answered.
    warned: AtomicBool,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the URL: it may hold a password.
        f.debug_struct("RedisRateLimiter")
            .field("options", &self.options)
            .field("healthy", &self.is_healthy())
            .field("failures", &self.failures())
            .finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// Connects to `url` (`redis://[user:password@]host[:port][/db]`) with the
    /// default [`RedisOptions`].
    pub async fn connect(url: &str) -> Result<Self, RedisLimiterError> {
        Self::connect_with(url, RedisOptions::default()).await
    }

    /// Connects to `url` and loads the script: an error means a bad URL, an
    /// unreachable server or one that does not run scripts, so the service
    /// can refuse to start on a misconfiguration. Once connected, the
    /// limiter reconnects by itself and fails open while it cannot.
    pub async fn connect_with(url: &str, options: RedisOptions) -> Result<Self, RedisLimiterError> {
        let limiter = Self::connect_lazy(url, options)?;
        let timeout = limiter.options.timeout;
        let load = async {
            let mut connection = limiter.connection().await?;
            GCRA.prepare_invoke().load_async(&mut connection).await
        };
        match tokio::time::timeout(timeout, load).await {
            Ok(Ok(_sha)) => {}
            Ok(Err(error)) => return Err(error.into()),
            Err(_) => return Err(RedisLimiterError::Timeout(timeout)),
        }
        limiter.healthy.store(true, Ordering::Relaxed);
        Ok(limiter)
    }

    /// A limiter that connects on its first check: only the URL is checked
    /// now. Until Redis answers, checks fail open.
    pub fn connect_lazy(url: &str, options: RedisOptions) -> Result<Self, RedisLimiterError> {
        Ok(Self {
            client: Client::open(url)?,
            options,
            connection: RwLock::new(None),
            connecting: tokio::sync::Mutex::new(()),
            started: Instant::now(),
            paused_until: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            failures_in_a_row: AtomicU32::new(0),
            healthy: AtomicBool::new(false),
            last_warning: Mutex::new(None),
            warned: AtomicBool::new(false),
        })
    }

    /// The options in force.
    pub fn options(&self) -> &RedisOptions {
        &self.options
    }

    /// How many checks were answered without Redis (failed open) since the
    /// limiter was made: the metric to alert on.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Whether Redis answered the last call. `false` before the first one
    /// of a [lazy](Self::connect_lazy) limiter.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Counts one request for `key` against a budget of `per_minute`, in
    /// Redis; allowed if Redis does not answer in time (fail open).
    ///
    /// A budget of zero refuses everything, without asking Redis.
    pub async fn decide(&self, key: &str, per_minute: u32) -> RateLimitDecision {
        let Some(limit) = NonZeroU32::new(per_minute) else {
            return decision::zero_budget();
        };
        if !self.paused() {
            match self.ask(key, limit).await {
                Ok(decision) => return decision,
                Err(error) => {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    self.warn(&error);
                    return Self::fail_open(limit);
                }
            }
        }
        self.failures.fetch_add(1, Ordering::Relaxed);
        Self::fail_open(limit)
    }

    /// Like [`decide`](Self::decide) but without the failure policy: Redis
    /// is asked even during a pause, and its failure is returned (and not
    /// counted in [`failures`](Self::failures)).
    pub async fn try_decide(&self, key: &str, per_minute: u32) -> Result<RateLimitDecision, RedisLimiterError> {
        match NonZeroU32::new(per_minute) {
            None => Ok(decision::zero_budget()),
            Some(limit) => self.ask(key, limit).await,
        }
    }

    /// What a check answers without Redis: allowed, as from a full bucket.
    fn fail_open(limit: NonZeroU32) -> RateLimitDecision {
        decision::allowed(limit, limit.get() - 1)
    }

    /// One GCRA step in Redis, within the timeout.
    async fn ask(&self, key: &str, limit: NonZeroU32) -> Result<RateLimitDecision, RedisLimiterError> {
        let period = decision::period(limit);
        let bucket = format!("{}{limit}:{key}", self.options.prefix);
        let call = async {
            let mut connection = self.connection().await?;
            GCRA.key(&bucket)
                .arg(u64::try_from(period.as_nanos()).unwrap_or(u64::MAX))
                .arg(limit.get())
                .invoke_async::<(i64, i64, i64)>(&mut connection)
                .await
        };
        let outcome = match tokio::time::timeout(self.options.timeout, call).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(error)) => Err(RedisLimiterError::Redis(error)),
            Err(_) => Err(RedisLimiterError::Timeout(self.options.timeout)),
        };
        match outcome {
            Ok((allowed, remaining, nanos)) => {
                self.answered();
                Ok(if allowed == 1 {
                    decision::allowed(limit, u32::try_from(remaining).unwrap_or(0))
                } else {
                    decision::refused(limit, Duration::from_nanos(u64::try_from(nanos).unwrap_or(0)))
                })
            }
            Err(error) => {
                self.broke();
                Err(error)
            }
        }
    }

    /// The connection, made if there is none.
    async fn connection(&self) -> Result<ConnectionManager, RedisError> {
        if let Some(connection) = self.current_connection() {
            return Ok(connection);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(connection) = self.current_connection() {
            return Ok(connection);
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.options.timeout)
            // One attempt per reconnection: the pause after a failure spaces them.
            .set_number_of_retries(0)
            .set_tcp_settings(TcpSettings::default().set_nodelay(true));
        let connection = ConnectionManager::new_with_config(self.client.clone(), config).await?;
        *self.connection.write().unwrap_or_else(PoisonError::into_inner) = Some(connection.clone());
        Ok(connection)
    }

    fn current_connection(&self) -> Option<ConnectionManager> {
        self.connection.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn paused(&self) -> bool {
        self.now_ms() < self.paused_until.load(Ordering::Relaxed)
    }

    /// Redis answered.
    fn answered(&self) {
        self.failures_in_a_row.store(0, Ordering::Relaxed);
        self.healthy.store(true, Ordering::Relaxed);
        if self.warned.swap(false, Ordering::Relaxed) {
            tracing::info!(failures = self.failures(), "rate-limit store answers again");
        }
    }

    /// Redis did not answer.
    fn broke(&self) {
        self.healthy.store(false, Ordering::Relaxed);
        let pause = u64::try_from(self.options.pause_after_failure.as_millis()).unwrap_or(u64::MAX);
        if pause > 0 {
            self.paused_until
                .store(self.now_ms().saturating_add(pause), Ordering::Relaxed);
        }
        if self.failures_in_a_row.fetch_add(1, Ordering::Relaxed) + 1 >= FAILURES_BEFORE_NEW_CONNECTION {
            self.failures_in_a_row.store(0, Ordering::Relaxed);
            *self.connection.write().unwrap_or_else(PoisonError::into_inner) = None;
        }
    }

    /// Logs a warning unless one was logged less than `warn_every` ago.
    fn warn(&self, error: &RedisLimiterError) {
        let now = Instant::now();
        let failures = self.failures();
        let mut last = self.last_warning.lock().unwrap_or_else(PoisonError::into_inner);
        if last.is_some_and(|(at, _)| now.duration_since(at) < self.options.warn_every) {
            return;
        }
        let since_last_warning = failures - last.map_or(0, |(_, then)| then);
        *last = Some((now, failures));
        drop(last);
        self.warned.store(true, Ordering::Relaxed);
        tracing::warn!(
            %error,
            failures,
            since_last_warning,
            "rate-limit store unavailable: failing open, requests are not rate limited"
        );
    }
}

impl RateLimiter for RedisRateLimiter {
    /// Never fails: without Redis the request is allowed (see [`RedisRateLimiter::decide`]).
    /// The key is the subject's text (`acct:<user id>`, `ip:<address>`).
    async fn check(&self, subject: RateSubject, per_minute: u32) -> Result<RateLimitDecision, InfraError> {
        Ok(self.decide(&subject.to_string(), per_minute).await)
    }
}
