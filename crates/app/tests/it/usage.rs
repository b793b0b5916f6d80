//! Usage of keys and accounts: counted on the gateway's path, read back by
//! hour and day, and a day's first rate limit told to the key's owner.

use crate::harness::{problem, TestApp};
use serde_json::{json, Value};
use std::time::Duration;

/// Creates a key with `agents:read`; (id, key).
async fn key(app: &TestApp, access: &str, name: &str) -> (String, String) {
    let body = app.new_key(access, name, &["agents:read"]).await;
    (
        body["id"].as_str().unwrap().to_owned(),
        body["key"].as_str().unwrap().to_owned(),
    )
}

/// A gateway check for `scope`, from `ip` (the nginx in front is a trusted proxy).
async fn authz(app: &TestApp, key: &str, scope: &str, ip: &str) -> u16 {
    let response = app
        .client
        .get(app.url(&format!("/v1/authz?scope={scope}")))
        .bearer_auth(key)
        .header("x-forwarded-for", ip)
        .header("user-agent", "convosphere-sdk/1.4")
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

/// The usage at `path` once its totals reach `requests` (flushed every two
/// seconds), or the last answer after ten seconds.
async fn usage_reaching(app: &TestApp, access: &str, path: &str, requests: u64) -> Value {
    let mut body = Value::Null;
    for _ in 0..100 {
        let response = app.get_auth(path, access).await;
        assert_eq!(response.status(), 200);
        body = response.json().await.unwrap();
        let totals = &body["totals"];
        let sum: u64 = ["allowed", "rate_limited", "insufficient_scope"]
            .iter()
            .map(|field| totals[field].as_u64().unwrap())
            .sum();
        if sum >= requests {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    body
}

#[tokio::test]
async fn a_keys_requests_are_counted_by_outcome_with_its_last_client() {
    let app = TestApp::with(&[("AUTH_TRUSTED_PROXIES", "127.0.0.1/32")]).await;
    let access = app.signed_in("ada@example.com").await;
    let (id, key) = key(&app, &access, "Production").await;
    let (_, other) = key_pair_of_another_key(&app, &access).await;
    for _ in 0..5 {
        assert_eq!(authz(&app, &key, "agents:read", "203.0.113.7").await, 200);
    }
    for _ in 0..2 {
        assert_eq!(authz(&app, &key, "chat:write", "203.0.113.7").await, 403);
    }
    assert_eq!(authz(&app, &other, "agents:read", "198.51.100.1").await, 200);
    // A forged key is nobody's usage.
    assert_eq!(
        authz(
            &app,
            "cs_00000000_0000000000000000000000000000000000000",
            "agents:read",
            "192.0.2.1"
        )
        .await,
        401
    );

    let path = format!("/v1/api-keys/{id}/usage?granularity=hour");
    let usage = usage_reaching(&app, &access, &path, 7).await;
    assert_eq!(usage["granularity"], "hour");
    assert_eq!(usage["limit_per_minute"], 100, "the free plan's");
    assert_eq!(
        usage["totals"],
        json!({"allowed": 5, "rate_limited": 0, "insufficient_scope": 2})
    );
    let buckets = usage["buckets"].as_array().unwrap();
    assert_eq!(
        buckets.len(),
        24,
        "every hour of the last day, this one and empty ones too"
    );
    let busy: Vec<&Value> = buckets.iter().filter(|b| b["allowed"].as_u64() > Some(0)).collect();
    assert_eq!(busy.len(), 1);
    assert_eq!(
        busy[0]["peak_per_minute"], 7,
        "every request of the minute, refused ones too"
    );
    assert!(
        busy[0]["start"].as_str().unwrap().ends_with(":00:00Z"),
        "{}",
        busy[0]["start"]
    );
    assert_eq!(usage["last_used_ip"], "203.0.113.7");
    assert_eq!(usage["last_used_user_agent"], "convosphere-sdk/1.4");

    // The account's: both keys, and the user's own requests (the key creations, these reads).
    let account = usage_reaching(&app, &access, "/v1/me/usage", 10).await;
    assert_eq!(account["granularity"], "day");
    assert_eq!(account["buckets"].as_array().unwrap().len(), 30);
    assert!(account["totals"]["allowed"].as_u64().unwrap() >= 8, "{account}");
    assert_eq!(account["totals"]["insufficient_scope"], 2);
    assert!(account.get("last_used_ip").is_none());
    // Nothing is counted twice by later flushes.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let again: Value = app.get_auth(&path, &access).await.json().await.unwrap();
    assert_eq!(again["totals"], usage["totals"]);

    // An operator sees the days and the busiest keys.
    let output = app.cli(&["user", "usage", "ada@example.com", "--days", "7"]);
    assert!(output.status.success());
    let report = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = report.lines().collect();
    assert!(
        lines[0].starts_with("ada@example.com (free plan, 100 requests a minute)"),
        "{report}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("20")).count(),
        7,
        "a line a day: {report}"
    );
    let keys: Vec<&&str> = lines.iter().filter(|l| l.starts_with("cs_")).collect();
    assert_eq!(keys.len(), 2, "{report}");
    assert!(
        keys[0].starts_with(&key[..11]) && keys[0].contains(" 7 requests  Production"),
        "{report}"
    );
    assert!(keys[1].contains(" 1 requests  Staging"), "{report}");
    let bad = app.cli(&["user", "usage", "ada@example.com", "--days", "0"]);
    assert_eq!(bad.status.code(), Some(2));
}

async fn key_pair_of_another_key(app: &TestApp, access: &str) -> (String, String) {
    key(app, access, "Staging").await
}

#[tokio::test]
async fn usage_queries_are_checked_and_a_key_is_its_owners_only() {
    let app = TestApp::spawn().await;
    let ada = app.signed_in("ada@example.com").await;
    let (id, key) = key(&app, &ada, "Production").await;
    for query in [
        "granularity=week",
        "from=yesterday",
        "granularity=hour&from=2020-01-01T00:00:00Z",
    ] {
        let response = app.get_auth(&format!("/v1/me/usage?{query}"), &ada).await;
        problem(response, 422, "validation_failed").await;
    }
    let grace = app.signed_in("grace@example.com").await;
    problem(
        app.get_auth(&format!("/v1/api-keys/{id}/usage"), &grace).await,
        404,
        "not_found",
    )
    .await;
    problem(
        app.get_auth("/v1/api-keys/not-a-uuid/usage", &ada).await,
        404,
        "not_found",
    )
    .await;
    problem(app.get_auth("/v1/me/usage", &key).await, 403, "user_token_required").await;
    let ranged = app
        .get_auth(
            "/v1/me/usage?granularity=hour&from=2026-01-01T10:30:00Z&to=2026-01-01T12:00:00Z",
            &ada,
        )
        .await;
    let body: Value = ranged.json().await.unwrap();
    assert_eq!(body["from"], "2026-01-01T10:00:00Z");
    assert_eq!(body["to"], "2026-01-01T13:00:00Z");
    assert_eq!(body["buckets"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_keys_first_rate_limited_answer_of_the_day_is_told_once() {
    let app = TestApp::with(&[("AUTH_RATE_LIMIT_FREE", "4")]).await;
    let access = app.signed_in("ada@example.com").await;
    let (id, key) = key(&app, &access, "Nightly export").await;
    // The key's creation was the first request of the budget of four.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(authz(&app, &key, "agents:read", "203.0.113.7").await);
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429]);
    let told = |app: &TestApp| -> Vec<String> {
        let mails = app.mails();
        mails
            .into_iter()
            .filter(|m| m.contains("reached its rate limit"))
            .collect()
    };
    for _ in 0..100 {
        if !told(&app).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mails = told(&app);
    assert_eq!(mails.len(), 1, "one e-mail");
    assert!(mails[0].contains("Nightly export"));
    assert!(mails[0].contains(&format!("/settings/api-keys/{id}")));
    // More refusals the same day tell nothing more.
    assert_eq!(authz(&app, &key, "agents:read", "203.0.113.7").await, 429);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(told(&app).len(), 1);
    let events = app.cli(&["user", "events", "ada@example.com"]);
    let events = String::from_utf8_lossy(&events.stdout);
    assert_eq!(events.matches("api_key.rate_limited").count(), 1, "{events}");
    // A bigger plan, and the counts can be read.
    assert!(app
        .cli(&["user", "set-plan", "ada@example.com", "pro"])
        .status
        .success());
    tokio::time::sleep(Duration::from_millis(1500)).await; // the instance hears of it within a second
    let usage = usage_reaching(&app, &access, &format!("/v1/api-keys/{id}/usage"), 7).await;
    assert_eq!(
        usage["totals"],
        json!({"allowed": 3, "rate_limited": 4, "insufficient_scope": 0})
    );
    assert_eq!(usage["limit_per_minute"], 10000);
}

#[tokio::test]
async fn a_keys_page_charts_its_usage_with_a_text_alternative() {
    let app = TestApp::spawn().await;
    let access = app.signed_in("ada@example.com").await;
    let (id, key) = key(&app, &access, "Production").await;
    for scope in ["agents:read", "agents:read", "agents:read", "chat:write"] {
        authz(&app, &key, scope, "203.0.113.7").await;
    }
    usage_reaching(&app, &access, &format!("/v1/api-keys/{id}/usage"), 4).await;
    let mut browser = crate::web::Browser::new(&app);
    browser.log_in("ada@example.com").await;
    let list = browser.get("/settings/api-keys").await;
    assert!(
        list.body.contains(&format!("href=\"/settings/api-keys/{id}\"")),
        "the list links to the key's page"
    );

    let page = browser.get(&format!("/settings/api-keys/{id}")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("role=\"img\""));
    assert!(page.body.contains("Requests by day, last 30 days"));
    assert!(page.body.contains("4 requests from"), "{}", page.body);
    assert!(page
        .body
        .contains("3 allowed, 0 refused for the rate limit, 1 for a missing scope"));
    assert_eq!(page.body.matches("class=\"bar-allowed\"").count(), 1, "one busy day");
    assert_eq!(page.body.matches("class=\"bar-refused\"").count(), 1);
    let hours = browser.get(&format!("/settings/api-keys/{id}?view=hours")).await;
    assert!(hours.body.contains("Requests by hour, last 7 days"));
    assert!(hours.body.contains("Nothing unusual"));

    // The dashboard shows today's usage against the plan's limit.
    let dashboard = browser.get("/dashboard").await;
    assert!(dashboard.body.contains("Usage today"));
    assert!(dashboard.body.contains("Busiest minute: "), "{}", dashboard.body);
    assert!(dashboard.body.contains("max=\"100\""));

    // Another account's key is not found.
    app.verified_user("grace@example.com").await;
    let mut other = crate::web::Browser::new(&app);
    other.log_in("grace@example.com").await;
    assert_eq!(other.get(&format!("/settings/api-keys/{id}")).await.status, 404);
}
