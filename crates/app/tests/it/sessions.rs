//! Sessions, access tokens and refresh tokens.

use super::harness::*;
use serde_json::{json, Value};
use std::time::Duration;

fn s(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap().to_owned()
}

async fn refresh_rotates_and_reuse_ends_the_session(app: TestApp) {
    app.verified_user("ada@example.com").await;
    let first = app.tokens("ada@example.com").await;
    let response = app
        .post("/v1/auth/refresh", json!({"refresh_token": s(&first, "refresh_token")}))
        .await;
    assert_eq!(response.status(), 200);
    let second: Value = response.json().await.unwrap();
    assert_eq!(second["session_id"], first["session_id"]);
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert!(second["refresh_expires_in"].as_i64().unwrap() <= first["refresh_expires_in"].as_i64().unwrap());
    assert_eq!(app.get_auth("/v1/me", &s(&second, "access_token")).await.status(), 200);

    // The old refresh token again: a theft signal that ends the session.
    let reuse = app
        .post("/v1/auth/refresh", json!({"refresh_token": s(&first, "refresh_token")}))
        .await;
    problem(reuse, 401, "invalid_token").await;
    let newest = app
        .post(
            "/v1/auth/refresh",
            json!({"refresh_token": s(&second, "refresh_token")}),
        )
        .await;
    problem(newest, 401, "session_expired").await;
    problem(
        app.get_auth("/v1/me", &s(&second, "access_token")).await,
        401,
        "session_expired",
    )
    .await;
    problem(
        app.post("/v1/auth/refresh", json!({"refresh_token": "made-up"})).await,
        401,
        "invalid_token",
    )
    .await;
}

#[tokio::test]
async fn logout_ends_the_session_at_once() {
    let app = TestApp::spawn().await;
    app.verified_user("ada@example.com").await;
    let pair = app.tokens("ada@example.com").await;
    let access = s(&pair, "access_token");
    assert_eq!(app.post_auth("/v1/auth/logout", &access, json!({})).await.status(), 204);
    let response = app.get_auth("/v1/me", &access).await;
    let challenge = response.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    problem(response, 401, "session_expired").await;
    let refresh = app
        .post("/v1/auth/refresh", json!({"refresh_token": s(&pair, "refresh_token")}))
        .await;
    problem(refresh, 401, "session_expired").await;
}

#[tokio::test]
async fn credentials_must_be_present_and_well_formed() {
    let app = TestApp::spawn().await;
    let response = app.client.get(app.url("/v1/me")).send().await.unwrap();
    assert!(response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    problem(response, 401, "missing_credentials").await;
    let basic = app
        .client
        .get(app.url("/v1/me"))
        .header("authorization", "Basic YTpi")
        .send()
        .await
        .unwrap();
    problem(basic, 401, "missing_credentials").await;
    problem(app.get_auth("/v1/me", "not.a.jwt").await, 401, "invalid_token").await;
    problem(
        app.post_auth("/v1/auth/logout", "garbage", json!({})).await,
        401,
        "invalid_token",
    )
    .await;
}

#[tokio::test]
async fn a_tampered_access_token_is_refused() {
    let app = TestApp::spawn().await;
    app.verified_user("ada@example.com").await;
    let access = s(&app.tokens("ada@example.com").await, "access_token");
    let mut parts: Vec<String> = access.split('.').map(String::from).collect();
    let last = parts[2].pop().unwrap();
    parts[2].push(if last == 'A' { 'B' } else { 'A' });
    problem(app.get_auth("/v1/me", &parts.join(".")).await, 401, "invalid_token").await;
}

#[tokio::test]
async fn access_tokens_expire_without_leeway() {
    // Two seconds: the fresh token below then has at least one to live
    // (`exp` is in whole seconds).
    let app = TestApp::with(&[("AUTH_ACCESS_TOKEN_TTL", "2s")]).await;
    app.verified_user("ada@example.com").await;
    let pair = app.tokens("ada@example.com").await;
    assert_eq!(pair["expires_in"], 2);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    problem(
        app.get_auth("/v1/me", &s(&pair, "access_token")).await,
        401,
        "token_expired",
    )
    .await;
    // The refresh token still works and gives a fresh access token.
    let fresh: Value = app
        .post("/v1/auth/refresh", json!({"refresh_token": s(&pair, "refresh_token")}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(app.get_auth("/v1/me", &s(&fresh, "access_token")).await.status(), 200);
}

#[tokio::test]
async fn an_idle_session_ends() {
    let app = TestApp::with(&[("AUTH_SESSION_IDLE_TIMEOUT", "1s")]).await;
    app.verified_user("ada@example.com").await;
    let pair = app.tokens("ada@example.com").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    problem(
        app.get_auth("/v1/me", &s(&pair, "access_token")).await,
        401,
        "session_expired",
    )
    .await;
    let refresh = app
        .post("/v1/auth/refresh", json!({"refresh_token": s(&pair, "refresh_token")}))
        .await;
    problem(refresh, 401, "session_expired").await;
}

#[tokio::test]
async fn the_refresh_lifetime_is_absolute() {
    let app = TestApp::with(&[("AUTH_REFRESH_TOKEN_TTL", "2s")]).await;
    app.verified_user("ada@example.com").await;
    let mut pair = app.tokens("ada@example.com").await;
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let response = app
            .post("/v1/auth/refresh", json!({"refresh_token": s(&pair, "refresh_token")}))
            .await;
        assert_eq!(response.status(), 200);
        pair = response.json().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let late = app
        .post("/v1/auth/refresh", json!({"refresh_token": s(&pair, "refresh_token")}))
        .await;
    problem(late, 401, "session_expired").await;
}

#[tokio::test]
async fn sessions_are_listed_and_revoked_only_by_their_owner() {
    let app = TestApp::spawn().await;
    app.verified_user("ada@example.com").await;
    app.verified_user("bob@example.com").await;
    let mine = app.tokens("ada@example.com").await;
    let other = app.tokens("ada@example.com").await;
    let bobs = app.tokens("bob@example.com").await;
    let access = s(&mine, "access_token");

    let list: Value = app.get_auth("/v1/sessions", &access).await.json().await.unwrap();
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0]["id"], other["session_id"], "newest first");
    assert_eq!(sessions[1]["current"], true);
    assert_eq!(sessions[0]["current"], false);
    for key in ["created_at", "last_active_at", "expires_at", "ip", "user_agent"] {
        assert!(sessions[0][key].is_string(), "{key} in {}", sessions[0]);
    }
    assert_eq!(sessions[0]["ip"], "127.0.0.1");

    let delete = |id: String| {
        app.client
            .delete(app.url(&format!("/v1/sessions/{id}")))
            .bearer_auth(&access)
            .send()
    };
    problem(delete(s(&bobs, "session_id")).await.unwrap(), 404, "not_found").await;
    problem(delete("not-a-uuid".into()).await.unwrap(), 404, "not_found").await;
    assert_eq!(app.get_auth("/v1/me", &s(&bobs, "access_token")).await.status(), 200);
    assert_eq!(delete(s(&other, "session_id")).await.unwrap().status(), 204);
    problem(
        app.get_auth("/v1/me", &s(&other, "access_token")).await,
        401,
        "session_expired",
    )
    .await;
    problem(delete(s(&other, "session_id")).await.unwrap(), 404, "not_found").await;
}

#[tokio::test]
async fn the_sixth_login_ends_the_oldest_session() {
    let app = TestApp::spawn().await;
    app.verified_user("ada@example.com").await;
    let mut pairs = Vec::new();
    for _ in 0..6 {
        pairs.push(app.tokens("ada@example.com").await);
    }
    problem(
        app.get_auth("/v1/me", &s(&pairs[0], "access_token")).await,
        401,
        "session_expired",
    )
    .await;
    let list: Value = app
        .get_auth("/v1/sessions", &s(&pairs[5], "access_token"))
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&Value> = list["sessions"].as_array().unwrap().iter().map(|x| &x["id"]).collect();
    assert_eq!(ids.len(), 5);
    assert!(!ids.contains(&&pairs[0]["session_id"]));
}

async fn a_suspended_account_cannot_log_in_and_its_sessions_end(app: TestApp) {
    app.verified_user("ada@example.com").await;
    let pair = app.tokens("ada@example.com").await;
    let binary = env!("CARGO_BIN_EXE_convosphere-auth");
    let output = std::process::Command::new(binary)
        .args(["user", "lock", "ada@example.com"])
        .env("AUTH_DATA_DIR", app.dir.path())
        .envs(app.database_url.clone().map(|url| ("AUTH_DATABASE_URL", url)))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    problem(
        app.get_auth("/v1/me", &s(&pair, "access_token")).await,
        401,
        "session_expired",
    )
    .await;
    problem(app.login("ada@example.com", PASSWORD).await, 403, "account_locked").await;
    problem(
        app.login("ada@example.com", "wrong password!").await,
        403,
        "account_locked",
    )
    .await;
}

on_both_backends! {
    refresh_rotates_and_reuse_ends_the_session(&[]),
    a_suspended_account_cannot_log_in_and_its_sessions_end(&[]),
}
