//! Integration tests of the in-memory rate limiter, on a clock the tests drive,
//! and of the Redis one (in `redis_limiter`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod redis_limiter;

use convosphere_domain::ports::{RateLimiter, RateSubject};
use convosphere_domain::UserId;
use convosphere_ratelimit::MemoryRateLimiter;
use governor::clock::FakeRelativeClock;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

fn ip(n: u32) -> RateSubject {
    RateSubject::Ip(Ipv4Addr::from(n).into())
}

fn account(n: u128) -> RateSubject {
    RateSubject::Account(UserId::from_uuid(uuid::Uuid::from_u128(n)))
}

fn limiter() -> (FakeRelativeClock, MemoryRateLimiter<FakeRelativeClock>) {
    let clock = FakeRelativeClock::default();
    (clock.clone(), MemoryRateLimiter::with_clock(clock))
}

#[test]
fn exactly_the_budget_goes_through_at_once() {
    let (_clock, limiter) = limiter();
    let allowed = (0..13).filter(|_| limiter.decide(ip(1), 10).allowed).count();
    assert_eq!(allowed, 10);
}

#[test]
fn remaining_counts_down_to_zero() {
    let (_clock, limiter) = limiter();
    for expected in (0..5).rev() {
        let decision = limiter.decide(account(1), 5);
        assert!(decision.allowed);
        assert_eq!(decision.limit, 5);
        assert_eq!(decision.remaining, expected);
        assert_eq!(decision.retry_after, None);
    }
    let refused = limiter.decide(account(1), 5);
    assert!(!refused.allowed);
    assert_eq!(refused.remaining, 0);
}

#[test]
fn one_request_comes_back_every_sixty_over_n_seconds() {
    let (clock, limiter) = limiter();
    for _ in 0..6 {
        assert!(limiter.decide(ip(7), 6).allowed);
    }
    assert!(!limiter.decide(ip(7), 6).allowed);
    clock.advance(Duration::from_millis(9_999));
    assert!(!limiter.decide(ip(7), 6).allowed, "not before 10 s");
    clock.advance(Duration::from_millis(1));
    let decision = limiter.decide(ip(7), 6);
    assert!(decision.allowed, "one back after 10 s");
    assert_eq!(decision.remaining, 0);
    assert!(!limiter.decide(ip(7), 6).allowed, "and only one");
    clock.advance(Duration::from_secs(60));
    assert_eq!(limiter.decide(ip(7), 6).remaining, 5, "full again after a minute");
}

#[test]
fn retry_after_and_reset_after_are_the_times_the_bucket_gives() {
    let (clock, limiter) = limiter();
    let first = limiter.decide(ip(7), 3);
    assert_eq!(first.reset_after, Duration::from_secs(20));
    limiter.decide(ip(7), 3);
    let last = limiter.decide(ip(7), 3);
    assert_eq!(last.remaining, 0);
    assert_eq!(last.reset_after, Duration::from_secs(60));

    clock.advance(Duration::from_secs(5));
    let refused = limiter.decide(ip(7), 3);
    assert!(!refused.allowed);
    assert_eq!(refused.retry_after, Some(Duration::from_secs(15)));
    assert_eq!(refused.reset_after, Duration::from_secs(55));

    // Waiting what it said is enough.
    clock.advance(refused.retry_after.unwrap_or_default());
    assert!(limiter.decide(ip(7), 3).allowed);
}

#[test]
fn reset_after_is_never_sooner_than_a_full_bucket() {
    let (clock, limiter) = limiter();
    for _ in 0..4 {
        limiter.decide(ip(7), 4);
    }
    clock.advance(Duration::from_secs(22));
    let decision = limiter.decide(ip(7), 4);
    assert!(decision.allowed);
    let reset = decision.reset_after;
    // The burst is refilled 60 s after it, this request 15 s later: 53 s from now.
    assert!(
        reset >= Duration::from_secs(53) && reset <= Duration::from_secs(53 + 15),
        "{reset:?}"
    );
    clock.advance(reset);
    assert_eq!(limiter.decide(ip(7), 4).remaining, 3, "full after reset_after");
}

#[test]
fn keys_do_not_share_a_budget() {
    let (_clock, limiter) = limiter();
    for _ in 0..3 {
        assert!(limiter.decide(account(1), 3).allowed);
    }
    assert!(!limiter.decide(account(1), 3).allowed);
    let other = limiter.decide(account(2), 3);
    assert!(other.allowed);
    assert_eq!(other.remaining, 2);
}

#[test]
fn budgets_do_not_share_a_bucket() {
    let (_clock, limiter) = limiter();
    for _ in 0..2 {
        assert!(limiter.decide(ip(7), 2).allowed);
    }
    assert!(!limiter.decide(ip(7), 2).allowed);
    let bigger = limiter.decide(ip(7), 100);
    assert!(bigger.allowed);
    assert_eq!(bigger.remaining, 99);
}

#[test]
fn every_subject_keeps_its_own_bucket() {
    let (_clock, limiter) = limiter();
    let subjects = [
        ip(1),
        ip(2),
        RateSubject::Ip(Ipv6Addr::LOCALHOST.into()),
        RateSubject::Ip(Ipv4Addr::from(1).to_ipv6_mapped().into()),
        account(1),
        account(2),
    ];
    for subject in subjects {
        assert!(limiter.decide(subject, 1).allowed, "{subject} has its own bucket");
    }
    for subject in subjects {
        assert!(!limiter.decide(subject, 1).allowed, "{subject} spent its budget");
    }
    assert_eq!(limiter.len(), subjects.len());
}

#[test]
fn many_budgets_keep_their_own_buckets() {
    let (_clock, limiter) = limiter();
    // More budgets than the lock-free table holds: the rest live in its overflow.
    for budget in 1..=40 {
        for _ in 0..budget {
            assert!(limiter.decide(ip(7), budget).allowed, "budget {budget}");
        }
        let refused = limiter.decide(ip(7), budget);
        assert!(!refused.allowed, "budget {budget} is spent");
        assert_eq!(refused.limit, budget);
    }
    assert_eq!(limiter.len(), 40);
}

#[test]
fn a_zero_budget_refuses() {
    let (_clock, limiter) = limiter();
    let decision = limiter.decide(ip(7), 0);
    assert!(!decision.allowed);
    assert!(decision.retry_after.is_some());
}

#[test]
fn idle_keys_are_forgotten() {
    let (clock, limiter) = limiter();
    for i in 0..100 {
        limiter.decide(ip(i), 60);
    }
    limiter.decide(ip(1000), 60);
    assert_eq!(limiter.len(), 101);
    clock.advance(Duration::from_secs(30));
    for _ in 0..30 {
        limiter.decide(ip(1000), 60);
    }
    limiter.retain_recent();
    assert_eq!(limiter.len(), 1, "only the busy key is still remembered");
    clock.advance(Duration::from_secs(120));
    limiter.retain_recent();
    assert!(limiter.is_empty());
}

#[test]
fn housekeeping_runs_on_its_own() {
    let clock = FakeRelativeClock::default();
    let limiter = MemoryRateLimiter::with_clock(clock.clone()).with_housekeeping_interval(Duration::from_secs(10));
    for i in 0..49 {
        limiter.decide(ip(i), 60);
    }
    clock.advance(Duration::from_secs(9));
    limiter.decide(ip(1001), 60);
    assert_eq!(limiter.len(), 50, "no sweep before the interval");
    clock.advance(Duration::from_secs(120));
    limiter.decide(ip(1002), 60);
    assert_eq!(
        limiter.len(),
        1,
        "the first check after the interval swept the idle keys"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_requests_never_beat_the_budget() {
    let (_clock, limiter) = limiter();
    let limiter = Arc::new(limiter);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move {
                let mut allowed = 0;
                for _ in 0..50 {
                    if limiter.check(account(3), 100).await.unwrap().allowed {
                        allowed += 1;
                    }
                    tokio::task::yield_now().await;
                }
                allowed
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    assert_eq!(total, 100, "16 × 50 requests, a budget of 100");
}

#[tokio::test]
async fn the_port_answers_like_decide() {
    let limiter = MemoryRateLimiter::new();
    let decision = limiter.check(ip(0xC000_0201), 60).await.unwrap();
    assert!(decision.allowed);
    assert_eq!((decision.limit, decision.remaining), (60, 59));
    assert!(decision.reset_after <= Duration::from_secs(1));
}
