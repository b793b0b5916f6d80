//! The rules hold under concurrent requests, on SQLite and on PostgreSQL.

use super::harness::*;
use futures_util::future::join_all;
use serde_json::{json, Value};

async fn parallel_uses_of_one_refresh_token_give_at_most_one_success(app: TestApp) {
    app.verified_user("ada@example.com").await;
    let pair = app.tokens("ada@example.com").await;
    let body = json!({"refresh_token": pair["refresh_token"]});
    let responses = join_all((0..8).map(|_| app.post("/v1/auth/refresh", body.clone()))).await;
    let ok: Vec<_> = responses.iter().filter(|r| r.status() == 200).collect();
    assert!(ok.len() <= 1, "{} successes", ok.len());
    assert!(responses.iter().all(|r| r.status() == 200 || r.status() == 401));
}

async fn six_parallel_logins_leave_five_sessions(app: TestApp) {
    app.verified_user("ada@example.com").await;
    let responses = join_all((0..6).map(|_| app.login("ada@example.com", PASSWORD))).await;
    let mut pairs = Vec::new();
    for response in responses {
        assert_eq!(response.status(), 200);
        pairs.push(response.json::<Value>().await.unwrap());
    }
    let mut alive = 0;
    let mut list_len = 0;
    for pair in &pairs {
        let response = app
            .get_auth("/v1/sessions", pair["access_token"].as_str().unwrap())
            .await;
        if response.status() == 200 {
            alive += 1;
            list_len = response.json::<Value>().await.unwrap()["sessions"]
                .as_array()
                .unwrap()
                .len();
        }
    }
    assert_eq!(alive, 5);
    assert_eq!(list_len, 5);
}

async fn parallel_wrong_passwords_lock_after_exactly_the_threshold(app: TestApp) {
    app.verified_user("ada@example.com").await;
    // One fewer than the threshold: not locked, and the right password resets the count.
    let wrong = join_all((0..5).map(|_| app.login("ada@example.com", "wrong password!"))).await;
    assert!(wrong.iter().all(|r| r.status() == 401));
    assert_eq!(app.login("ada@example.com", PASSWORD).await.status(), 200);
    // Exactly the threshold, in parallel: locked.
    let wrong = join_all((0..6).map(|_| app.login("ada@example.com", "wrong password!"))).await;
    assert!(wrong.iter().all(|r| r.status() == 401));
    problem(app.login("ada@example.com", PASSWORD).await, 403, "account_locked").await;
}

async fn parallel_uses_of_one_reset_link_give_one_success(app: TestApp) {
    app.verified_user("ada@example.com").await;
    app.post("/v1/auth/password/forgot", json!({"email": "ada@example.com"}))
        .await;
    let token = app.wait_for_link(2, "/reset-password").await;
    let responses = join_all((0..6).map(|i| {
        app.post(
            "/v1/auth/password/reset",
            json!({"token": token, "password": format!("new passphrase number {i}")}),
        )
    }))
    .await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 204).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 204 || *s == 400), "{statuses:?}");
}

async fn parallel_uses_of_one_verification_link_give_one_success(app: TestApp) {
    app.signup("ada@example.com").await;
    let token = app.wait_for_link(1, "/verify-email").await;
    let responses = join_all((0..6).map(|_| app.post("/v1/auth/verify-email", json!({"token": token})))).await;
    assert_eq!(responses.iter().filter(|r| r.status() == 200).count(), 1);
}

on_both_backends! {
    parallel_uses_of_one_refresh_token_give_at_most_one_success(&[]),
    six_parallel_logins_leave_five_sessions(&[]),
    parallel_wrong_passwords_lock_after_exactly_the_threshold(&[("AUTH_LOCKOUT_THRESHOLD", "6")]),
    parallel_uses_of_one_reset_link_give_one_success(&[]),
    parallel_uses_of_one_verification_link_give_one_success(&[]),
}
