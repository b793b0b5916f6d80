//! The Redis limiter against a real Redis (`TEST_REDIS_URL`, by default
//! `redis://127.0.0.1:6379`; each test is skipped with a notice when it does
//! not answer), and its failure policy against servers that do not answer.
//!
//! Each test writes under its own random key prefix and deletes its keys at
//! the end; keys left by a failed test expire within a minute anyway.

use convosphere_domain::ports::{RateLimitDecision, RateLimiter, RateSubject};
use convosphere_domain::UserId;
use convosphere_ratelimit::{MemoryRateLimiter, RedisLimiterError, RedisOptions, RedisRateLimiter};
use rand::{Rng, SeedableRng};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// A Redis for one test: its URL, a key prefix of its own and a connection
/// to look at the keys with.
struct TestRedis {
    url: String,
    prefix: String,
    conn: redis::aio::MultiplexedConnection,
}

/// The Redis of `TEST_REDIS_URL`, or `None` (with a notice) if it does not answer.
async fn test_redis() -> Option<TestRedis> {
    let url = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let client = redis::Client::open(url.as_str()).expect("TEST_REDIS_URL is a Redis URL");
    match tokio::time::timeout(Duration::from_secs(2), client.get_multiplexed_async_connection()).await {
        Ok(Ok(conn)) => Some(TestRedis {
            url,
            prefix: format!("convosphere:test:{:016x}:", rand::random::<u64>()),
            conn,
        }),
        Ok(Err(error)) => {
            eprintln!("Redis at TEST_REDIS_URL does not answer ({error}): skipping this test");
            None
        }
        Err(_) => {
            eprintln!("Redis at TEST_REDIS_URL does not answer in time: skipping this test");
            None
        }
    }
}

impl TestRedis {
    /// This test's prefix, and a timeout generous enough for a busy CI
    /// machine: a test must never see a fail-open answer by accident (each
    /// one checks `failures()` too).
    fn options(&self) -> RedisOptions {
        let mut options = RedisOptions::default();
        options.prefix = self.prefix.clone();
        options.timeout = Duration::from_secs(5);
        options
    }

    /// A limiter with its own connection, like one more service instance.
    async fn limiter(&self) -> RedisRateLimiter {
        RedisRateLimiter::connect_with(&self.url, self.options()).await.unwrap()
    }

    async fn keys(&mut self) -> Vec<String> {
        redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query_async(&mut self.conn)
            .await
            .unwrap()
    }

    /// Deletes this test's keys.
    async fn clean(mut self) {
        let keys = self.keys().await;
        if !keys.is_empty() {
            redis::cmd("DEL").arg(keys).exec_async(&mut self.conn).await.unwrap();
        }
    }
}

async fn check(limiter: &RedisRateLimiter, key: &str, per_minute: u32) -> RateLimitDecision {
    limiter.decide(key, per_minute).await
}

/// A port where nothing listens.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

fn lazy(port: u16, options: RedisOptions) -> RedisRateLimiter {
    RedisRateLimiter::connect_lazy(&format!("redis://127.0.0.1:{port}"), options).unwrap()
}

#[tokio::test]
async fn exactly_the_budget_goes_through_at_once() {
    let Some(redis) = test_redis().await else { return };
    let limiter = redis.limiter().await;
    let mut allowed = 0;
    for _ in 0..13 {
        if check(&limiter, "ip:1", 10).await.allowed {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 10);
    assert_eq!(limiter.failures(), 0);
    assert!(limiter.is_healthy());
    redis.clean().await;
}

#[tokio::test]
async fn remaining_counts_down_to_zero() {
    let Some(redis) = test_redis().await else { return };
    let limiter = redis.limiter().await;
    for expected in (0..5).rev() {
        let decision = check(&limiter, "user:a", 5).await;
        assert!(decision.allowed);
        assert_eq!(decision.limit, 5);
        assert_eq!(decision.remaining, expected);
        assert_eq!(decision.retry_after, None);
    }
    let refused = check(&limiter, "user:a", 5).await;
    assert!(!refused.allowed);
    assert_eq!((refused.limit, refused.remaining), (5, 0));
    assert_eq!(limiter.failures(), 0);
    redis.clean().await;
}

#[tokio::test]
async fn retry_after_and_reset_after_are_the_times_the_bucket_gives() {
    let Some(redis) = test_redis().await else { return };
    let limiter = redis.limiter().await;
    let first = check(&limiter, "k", 3).await;
    assert_eq!(first.reset_after, Duration::from_secs(20));
    check(&limiter, "k", 3).await;
    let last = check(&limiter, "k", 3).await;
    assert_eq!(last.remaining, 0);
    assert_eq!(last.reset_after, Duration::from_secs(60));

    let refused = check(&limiter, "k", 3).await;
    assert!(!refused.allowed);
    let retry = refused.retry_after.unwrap();
    // The first request's cell comes back 20 s after it, a moment ago.
    assert!(
        retry <= Duration::from_secs(20) && retry > Duration::from_secs(19),
        "{retry:?}"
    );
    assert_eq!(refused.reset_after, retry + Duration::from_secs(40));
    assert_eq!(limiter.failures(), 0);
    redis.clean().await;
}

/// 600 a minute: one request back every 100 ms.
#[tokio::test]
async fn one_request_comes_back_every_sixty_over_n_seconds() {
    let Some(redis) = test_redis().await else { return };
    let limiter = redis.limiter().await;
    let started = Instant::now();
    // The burst, pipelined on the one connection.
    let burst = futures_util::future::join_all((0..600).map(|_| check(&limiter, "k", 600))).await;
    let mut allowed = burst.iter().filter(|d| d.allowed).count();
    let refused = loop {
        let decision = check(&limiter, "k", 600).await;
        if !decision.allowed {
            break decision;
        }
        allowed += 1;
    };
    let refills = started.elapsed().as_millis() / 100;
    assert!(
        allowed >= 600 && allowed as u128 <= 600 + refills + 1,
        "{allowed} allowed in {:?}",
        started.elapsed()
    );

    let retry = refused.retry_after.unwrap();
    assert!(retry <= Duration::from_millis(100), "{retry:?}");
    tokio::time::sleep(retry + Duration::from_millis(2)).await;
    let back = check(&limiter, "k", 600).await;
    assert!(back.allowed, "one back after retry_after");

    // 3.5 periods later: three cells back, one spent now.
    tokio::time::sleep(Duration::from_millis(350)).await;
    let later = check(&limiter, "k", 600).await;
    assert!(later.allowed);
    assert!((2..=3).contains(&later.remaining), "{later:?}");
    assert_eq!(limiter.failures(), 0);
    redis.clean().await;
}

#[tokio::test]
async fn the_key_lives_until_the_bucket_is_full() {
    let Some(mut redis) = test_redis().await else { return };
    let limiter = redis.limiter().await;
    let mut last = None;
    for _ in 0..3 {
        last = Some(check(&limiter, "user:a", 600).await);
    }
    let last = last.unwrap();
    assert_eq!(last.remaining, 597);
    assert_eq!(last.reset_after, Duration::from_millis(300));

    let key = format!("{}600:user:a", redis.prefix);
    assert_eq!(redis.keys().await, vec![key.clone()]);
    let ttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut redis.conn).await.unwrap();
    assert!(ttl > 200 && ttl <= 300, "PTTL {ttl}");
    let tat: String = redis::cmd("GET").arg(&key).query_async(&mut redis.conn).await.unwrap();
    let (seconds, nanos) = tat.split_once('.').unwrap();
    assert!(
        seconds.parse::<u64>().unwrap() > 1_700_000_000 && nanos.len() == 9,
        "{tat}"
    );

    tokio::time::sleep(last.reset_after + Duration::from_millis(5)).await;
    assert!(redis.keys().await.is_empty(), "a full bucket is no key");
    assert_eq!(check(&limiter, "user:a", 600).await.remaining, 599);
    assert_eq!(limiter.failures(), 0);
    redis.clean().await;
}

#[tokio::test]
async fn keys_do_not_share_a_budget() {
    let Some(redis) = test_redis().await else { return };
    let limiter = redis.limiter().await;
    for _ in 0..3 {
        assert!(check(&limiter, "user:a", 3).await.allowed);
    }
    assert!(!check(&limiter, "user:a", 3).await.allowed);
    let other = check(&limiter, "user:b", 3).await;
    assert!(other.allowed);
    assert_eq!(other.remaining, 2);
    assert_eq!(limiter.failures(), 0);
    redis.clean().await;
}

#[tokio::test]
async fn budgets_do_not_share_a_bucket() {
    let Some(redis) = test_redis().await else { return };
    let limiter = redis.limiter().await;
    for _ in 0..2 {
        assert!(check(&limiter, "k", 2).await.allowed);
    }
    assert!(!check(&limiter, "k", 2).await.allowed);
    let bigger = check(&limiter, "k", 100).await;
    assert!(bigger.allowed);
    assert_eq!(bigger.remaining, 99);
    assert_eq!(limiter.failures(), 0);
    redis.clean().await;
}

#[tokio::test]
async fn a_zero_budget_refuses_without_asking() {
    // Not even a Redis is needed.
    let limiter = lazy(closed_port().await, RedisOptions::default());
    let decision = check(&limiter, "k", 0).await;
    assert!(!decision.allowed);
    assert_eq!(decision.retry_after, Some(Duration::from_secs(60)));
    assert_eq!(limiter.failures(), 0);
}

/// The same checks, in the same order, against both limiters give the same
/// answers: allowed, limit, remaining and reset_after exactly; the waits of
/// refused requests up to the time the run takes.
#[tokio::test]
async fn redis_answers_like_memory() {
    let Some(redis) = test_redis().await else { return };
    let limiter = redis.limiter().await;
    let memory = MemoryRateLimiter::new();
    // Budgets whose period (≥ 4.6 s) is longer than the run; 7 and 13 do not
    // divide a minute into whole nanoseconds.
    let budgets = [1, 2, 3, 5, 7, 13];
    let keys = [
        RateSubject::Ip([192, 0, 2, 1].into()),
        RateSubject::Ip([192, 0, 2, 2].into()),
        RateSubject::Account(UserId::from_uuid(uuid::Uuid::from_u128(1))),
        RateSubject::Account(UserId::from_uuid(uuid::Uuid::from_u128(2))),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let started = Instant::now();
    let mut refused = 0;
    for step in 0..300 {
        let key = keys[rng.gen_range(0..keys.len())];
        let budget = budgets[rng.gen_range(0..budgets.len())];
        let expected = memory.check(key, budget).await.unwrap();
        // Both through the port: the Redis one keys by the subject's text.
        let got = limiter.check(key, budget).await.unwrap();
        let context = format!("step {step}: {key} at {budget}/min: memory {expected:?}, redis {got:?}");
        assert_eq!(
            (got.allowed, got.limit, got.remaining),
            (expected.allowed, expected.limit, expected.remaining),
            "{context}"
        );
        if got.allowed {
            assert_eq!(got.reset_after, expected.reset_after, "{context}");
            assert_eq!(got.retry_after, None, "{context}");
        } else {
            refused += 1;
            let slack = started.elapsed() + Duration::from_millis(50);
            let (a, b) = (got.retry_after.unwrap(), expected.retry_after.unwrap());
            assert!(a.abs_diff(b) <= slack, "{context}");
            assert!(got.reset_after.abs_diff(expected.reset_after) <= slack, "{context}");
        }
    }
    assert!(refused > 100, "the run refuses often enough to compare ({refused})");
    assert_eq!(limiter.failures(), 0);
    redis.clean().await;
}

/// 16 instances, each with its own connection, on one key: never more than
/// the budget, however the requests interleave.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_instances_never_beat_the_budget() {
    let Some(redis) = test_redis().await else { return };
    let redis = Arc::new(redis);
    let mut instances = Vec::new();
    for _ in 0..16 {
        instances.push(redis.limiter().await);
    }
    let start = Arc::new(tokio::sync::Barrier::new(16));
    let started = Instant::now();
    let tasks: Vec<_> = instances
        .into_iter()
        .map(|limiter| {
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                let mut allowed = 0;
                for _ in 0..10 {
                    if check(&limiter, "user:shared", 20).await.allowed {
                        allowed += 1;
                    }
                    tokio::task::yield_now().await;
                }
                assert_eq!(limiter.failures(), 0);
                allowed
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    // 20 a minute: one more every 3 s, should the run be that slow.
    let refills = started.elapsed().as_secs() / 3;
    assert!(
        total >= 20 && total <= 20 + refills,
        "{total} of 16 × 10 requests, a budget of 20"
    );
    Arc::into_inner(redis).unwrap().clean().await;
}

#[tokio::test]
async fn the_script_is_loaded_again_when_redis_forgot_it() {
    let Some(mut redis) = test_redis().await else { return };
    let limiter = redis.limiter().await;
    assert_eq!(check(&limiter, "k", 5).await.remaining, 4);
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .exec_async(&mut redis.conn)
        .await
        .unwrap();
    assert_eq!(check(&limiter, "k", 5).await.remaining, 3);
    assert_eq!(limiter.failures(), 0);
    redis.clean().await;
}

#[tokio::test]
async fn the_port_never_fails_and_counts_what_redis_could_not_answer() {
    let mut options = RedisOptions::default();
    options.pause_after_failure = Duration::ZERO;
    let limiter = lazy(closed_port().await, options);
    assert!(!limiter.is_healthy());
    for n in 1..=3 {
        let decision = check(&limiter, "ip:192.0.2.1", 60).await;
        assert!(decision.allowed, "fail open");
        assert_eq!((decision.limit, decision.remaining), (60, 59));
        assert_eq!(decision.reset_after, Duration::from_secs(1));
        assert_eq!(decision.retry_after, None);
        assert_eq!(limiter.failures(), n);
    }
    assert!(!limiter.is_healthy());
    // The strict call says why, and is not counted.
    let error = limiter.try_decide("ip:192.0.2.1", 60).await.unwrap_err();
    assert!(matches!(error, RedisLimiterError::Redis(_)), "{error}");
    assert_eq!(limiter.failures(), 3);
}

#[tokio::test]
async fn connect_says_when_redis_is_not_there() {
    let port = closed_port().await;
    let error = RedisRateLimiter::connect(&format!("redis://127.0.0.1:{port}"))
        .await
        .unwrap_err();
    assert!(matches!(error, RedisLimiterError::Redis(_)), "{error}");
    assert!(RedisRateLimiter::connect("http://example.com").await.is_err());
    assert!(RedisRateLimiter::connect_lazy("not a url", RedisOptions::default()).is_err());
}

/// A server that accepts connections and never answers: each check waits
/// the timeout at most, and after a failure the next ones do not wait at all.
#[tokio::test]
async fn a_hanging_redis_costs_one_timeout_then_nothing() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });

    let mut options = RedisOptions::default();
    options.timeout = Duration::from_millis(200);
    options.pause_after_failure = Duration::from_secs(60);
    let url = format!("redis://127.0.0.1:{port}");
    // No answer to the script's loading, or to the handshake: a timeout either way.
    let began = Instant::now();
    assert!(RedisRateLimiter::connect_with(&url, options.clone()).await.is_err());
    assert!(began.elapsed() < Duration::from_secs(2));

    let limiter = RedisRateLimiter::connect_lazy(&url, options).unwrap();
    let began = Instant::now();
    assert!(check(&limiter, "k", 10).await.allowed);
    let first = began.elapsed();
    assert!(
        first >= Duration::from_millis(190) && first < Duration::from_secs(2),
        "{first:?}"
    );
    let began = Instant::now();
    for _ in 0..100 {
        let decision = check(&limiter, "k", 10).await;
        assert!(decision.allowed);
        assert_eq!(decision.remaining, 9);
    }
    assert!(began.elapsed() < Duration::from_millis(100), "paused: no waiting");
    assert_eq!(limiter.failures(), 101);
    assert!(!limiter.is_healthy());
}

/// A TCP proxy to the test Redis that can be cut: every connection dropped,
/// new ones closed at once, until it is back up.
struct Proxy {
    url: String,
    up: tokio::sync::watch::Sender<bool>,
}

async fn proxy(redis_url: &str) -> Proxy {
    let client = redis::Client::open(redis_url).unwrap();
    let redis::ConnectionAddr::Tcp(host, port) = client.get_connection_info().addr.clone() else {
        panic!("TEST_REDIS_URL is not plain TCP");
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_port = listener.local_addr().unwrap().port();
    let (up, watch) = tokio::sync::watch::channel(true);
    let target = format!("{host}:{port}");
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let mut watch = watch.clone();
            if !*watch.borrow() {
                continue;
            }
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(target).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = watch.wait_for(|up| !*up) => {}
                }
            });
        }
    });
    let url = if redis_url.contains(&format!("{host}:{port}")) {
        redis_url.replacen(&format!("{host}:{port}"), &format!("127.0.0.1:{proxy_port}"), 1)
    } else {
        redis_url.replacen(&host, &format!("127.0.0.1:{proxy_port}"), 1)
    };
    Proxy { url, up }
}

#[tokio::test]
async fn fails_open_while_redis_is_away_and_comes_back_with_it() {
    let Some(redis) = test_redis().await else { return };
    let proxy = proxy(&redis.url).await;
    let mut options = redis.options();
    options.timeout = Duration::from_millis(500);
    options.pause_after_failure = Duration::from_millis(50);
    let limiter = RedisRateLimiter::connect_with(&proxy.url, options).await.unwrap();
    assert!(limiter.is_healthy());
    assert_eq!(check(&limiter, "user:a", 5).await.remaining, 4);
    assert_eq!(check(&limiter, "user:a", 5).await.remaining, 3);

    proxy.up.send_replace(false);
    tokio::time::sleep(Duration::from_millis(20)).await;
    for _ in 0..5 {
        let decision = check(&limiter, "user:a", 5).await;
        assert!(decision.allowed);
        assert_eq!(decision.remaining, 4, "fail open: as from a full bucket");
    }
    assert!(limiter.failures() >= 5);
    assert!(!limiter.is_healthy());

    proxy.up.send_replace(true);
    let failures = limiter.failures();
    let mut recovered = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(60)).await;
        let decision = check(&limiter, "user:a", 5).await;
        if limiter.is_healthy() {
            recovered = Some(decision);
            break;
        }
    }
    let decision = recovered.expect("back within 3 s");
    assert_eq!(decision.remaining, 2, "the bucket in Redis went on where it was");
    assert!(limiter.failures() >= failures);
    redis.clean().await;
}

/// Captures what is logged on this thread.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn one_warning_per_period_however_many_failures() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut options = RedisOptions::default();
    options.pause_after_failure = Duration::ZERO;
    options.warn_every = Duration::from_secs(3600);
    let limiter = lazy(closed_port().await, options);
    for _ in 0..10 {
        assert!(check(&limiter, "k", 10).await.allowed);
    }
    assert_eq!(limiter.failures(), 10);
    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let warnings: Vec<_> = logged.lines().filter(|line| line.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{logged}");
    assert!(warnings[0].contains("failing open"), "{logged}");
    assert!(!logged.contains("redis://"), "the URL is not logged");
}
