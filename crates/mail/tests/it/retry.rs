//! The queue: `send` never waits for the server; failures are retried.

use crate::server::{silent_listener, unused_port, SmtpServer};
use crate::support::*;
use convosphere_domain::ports::Mailer;
use convosphere_mail::{MailConfig, MailService, RetryPolicy};
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_server_that_comes_up_later_still_gets_the_message() {
    let (logs, _guard) = Logs::capture();
    let port = unused_port();
    let mut config = smtp_config(format!("smtp://127.0.0.1:{port}"));
    config.retry = fast_retries(50);
    let mail = MailService::start(config).unwrap();
    mail.send(verify_email("ada@example.com")).await.unwrap();

    eventually(|| mail.stats().retried >= 2).await;
    assert_eq!(mail.stats().sent, 0);
    let server = SmtpServer::start_on_port(port);
    let received = server.wait_for(1).await;
    assert!(parse(&received[0].data).text.contains(VERIFY_LINK));
    eventually(|| mail.stats().sent == 1).await;
    let stats = mail.stats();
    assert_eq!((stats.failed, stats.pending), (0, 0));

    let logs = logs.text();
    assert!(logs.contains("mail delivery failed; will retry"), "{logs}");
    assert!(
        logs.contains("verify_email") && logs.contains("example.com"),
        "kind and domain: {logs}"
    );
    assert!(!logs.contains("token="), "never the link: {logs}");
}

#[tokio::test]
async fn send_returns_at_once_when_the_server_hangs() {
    let (_listener, addr) = silent_listener();
    let mut config = smtp_config(format!("smtp://{addr}"));
    config.smtp_timeout = Duration::from_secs(30);
    let mail = MailService::start(config).unwrap();
    let started = Instant::now();
    for _ in 0..10 {
        mail.send(verify_email("ada@example.com")).await.unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(mail.stats().pending, 10);
}

#[tokio::test]
async fn send_returns_at_once_when_the_server_is_unreachable() {
    let mail = MailService::start(MailConfig {
        // TEST-NET-1: packets go nowhere, connecting waits for the timeout.
        smtp_timeout: Duration::from_secs(30),
        ..smtp_config("smtp://192.0.2.1:25".into())
    })
    .unwrap();
    let started = Instant::now();
    mail.send(password_reset("ada@example.com")).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn it_gives_up_after_the_last_attempt_and_says_so() {
    let (logs, _guard) = Logs::capture();
    let mut config = smtp_config(format!("smtp://127.0.0.1:{}", unused_port()));
    config.retry = fast_retries(3);
    let mail = MailService::start(config).unwrap();
    mail.send(password_reset("bob@example.net")).await.unwrap();
    assert_eq!(mail.shutdown(Duration::from_secs(5)).await, 0);
    let stats = mail.stats();
    assert_eq!((stats.sent, stats.failed, stats.retried, stats.pending), (0, 1, 2, 0));
    let logs = logs.text();
    assert!(logs.contains("mail delivery failed; giving up"), "{logs}");
    assert!(
        logs.contains("password_reset") && logs.contains("example.net"),
        "{logs}"
    );
    assert!(!logs.contains("token="), "{logs}");
}

#[tokio::test]
async fn a_permanent_refusal_is_not_retried_and_the_address_is_not_logged() {
    let (logs, _guard) = Logs::capture();
    let server = SmtpServer::start_rejecting();
    let mut config = smtp_config(format!("smtp://127.0.0.1:{}", server.port));
    config.retry = fast_retries(5);
    let mail = MailService::start(config).unwrap();
    mail.send(verify_email("nobody@example.com")).await.unwrap();
    assert_eq!(mail.shutdown(Duration::from_secs(5)).await, 0);
    let stats = mail.stats();
    assert_eq!((stats.sent, stats.failed, stats.retried), (0, 1, 0));
    let logs = logs.text();
    assert!(logs.contains("mail refused for good") && logs.contains("550"), "{logs}");
    assert!(logs.contains("<recipient>"), "{logs}");
    assert!(!logs.contains("nobody@"), "{logs}");
}

#[tokio::test]
async fn shutdown_waits_for_the_queue_then_refuses_new_mail() {
    let server = SmtpServer::start();
    let mail = MailService::start(smtp_config(format!("smtp://127.0.0.1:{}", server.port))).unwrap();
    for _ in 0..5 {
        mail.send(signup_attempt("ada@example.com")).await.unwrap();
    }
    assert_eq!(mail.shutdown(Duration::from_secs(10)).await, 0);
    assert_eq!(
        server.received().len(),
        5,
        "everything was delivered before shutdown returned"
    );
    let refused = mail.send(signup_attempt("ada@example.com")).await.unwrap_err();
    assert!(refused.is_unavailable());
}

#[tokio::test]
async fn shutdown_gives_up_at_its_deadline() {
    let (_listener, addr) = silent_listener();
    let mut config = smtp_config(format!("smtp://{addr}"));
    config.smtp_timeout = Duration::from_secs(30);
    let mail = MailService::start(config).unwrap();
    mail.send(verify_email("ada@example.com")).await.unwrap();
    let started = Instant::now();
    assert_eq!(mail.shutdown(Duration::from_millis(200)).await, 1);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_full_queue_refuses_instead_of_blocking() {
    let (_listener, addr) = silent_listener();
    let mail = MailService::start(MailConfig {
        queue_capacity: 2,
        max_concurrent_sends: 1,
        enqueue_timeout: Duration::from_millis(50),
        smtp_timeout: Duration::from_secs(30),
        ..smtp_config(format!("smtp://{addr}"))
    })
    .unwrap();
    let mut refused = 0;
    for _ in 0..10 {
        if mail.send(verify_email("ada@example.com")).await.is_err() {
            refused += 1;
        }
    }
    // One in flight, one waiting for a permit, two queued: the rest are refused.
    assert!(refused >= 5, "{refused} refused");
}

#[test]
fn backoff_doubles_up_to_its_ceiling() {
    let retry = RetryPolicy::default();
    let waits: Vec<u64> = (1..=4).map(|n| retry.backoff(n).as_secs()).collect();
    assert_eq!(waits, [1, 2, 4, 8]);
    assert_eq!(retry.attempts, 5);
    assert_eq!(retry.backoff(30), Duration::from_secs(60));
}
