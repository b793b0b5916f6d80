//! What the security review of main found (issue 21), each as a user or an
//! attacker would see it.

use crate::harness::*;
use serde_json::{json, Value};

/// The tests connect from 127.0.0.1: here it is the trusted proxy.
const BEHIND_A_PROXY: (&str, &str) = ("AUTH_TRUSTED_PROXIES", "127.0.0.1/32");

#[tokio::test]
async fn a_forwarded_for_line_added_by_the_proxy_wins_over_the_clients_own() {
    let app = TestApp::with(&[BEHIND_A_PROXY]).await;
    app.verified_user("ada@example.com").await;
    // The client wrote the first line; the proxy added the second instead of appending.
    let response = app
        .client
        .post(app.url("/v1/auth/login"))
        .header("x-forwarded-for", "198.51.100.66")
        .header("x-forwarded-for", "203.0.113.9, 127.0.0.1")
        .json(&json!({"email": "ada@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let tokens: Value = response.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    let list: Value = app.get_auth("/v1/sessions", access).await.json().await.unwrap();
    assert_eq!(list["sessions"][0]["ip"], "203.0.113.9");
}

#[tokio::test]
async fn ipv6_clients_are_limited_by_their_64() {
    let app = TestApp::with(&[BEHIND_A_PROXY, ("AUTH_IP_RATE_LIMIT", "2")]).await;
    let forgot = |from: &'static str| {
        app.client
            .post(app.url("/v1/auth/password/forgot"))
            .header("x-forwarded-for", from)
            .json(&json!({"email": "a@example.com"}))
            .send()
    };
    assert_eq!(forgot("2001:db8:1:2::1").await.unwrap().status(), 202);
    assert_eq!(forgot("2001:db8:1:2::ab:2").await.unwrap().status(), 202);
    // Another address of the same /64: the same budget, spent.
    problem(forgot("2001:db8:1:2:ffff::3").await.unwrap(), 429, "rate_limited").await;
    // The next /64 is another client.
    assert_eq!(forgot("2001:db8:1:3::1").await.unwrap().status(), 202);
    // IPv4 clients are still counted by address.
    assert_eq!(forgot("192.0.2.1").await.unwrap().status(), 202);
    assert_eq!(forgot("192.0.2.2").await.unwrap().status(), 202);
}

/// Asks for a reset link for ada and returns its token.
async fn reset_link(app: &TestApp) -> String {
    let before = app.mails().len();
    let forgot = app.post("/v1/auth/password/forgot", json!({"email": "ada@example.com"}));
    assert_eq!(forgot.await.status(), 202);
    app.wait_for_link(before + 1, "/reset-password").await
}

async fn a_password_change_ends_outstanding_reset_links(app: TestApp) {
    app.verified_user("ada@example.com").await;
    let stolen = reset_link(&app).await;
    let tokens = app.tokens("ada@example.com").await;
    let change = json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"});
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(
        app.post_auth("/v1/auth/password/change", access, change).await.status(),
        204
    );
    let reset = json!({"token": stolen, "password": "the attacker's passphrase"});
    problem(app.post("/v1/auth/password/reset", reset).await, 400, "link_invalid").await;
    assert_eq!(
        app.login("ada@example.com", "a brand new passphrase").await.status(),
        200
    );

    // A successful reset ends every other link too (an older one is already
    // replaced by a newer one; the newest is used by the reset itself).
    let link = reset_link(&app).await;
    let reset = json!({"token": link, "password": "yet another passphrase"});
    assert_eq!(app.post("/v1/auth/password/reset", reset).await.status(), 204);
    let again = json!({"token": link, "password": "the attacker's passphrase"});
    problem(app.post("/v1/auth/password/reset", again).await, 400, "link_invalid").await;
}

on_both_backends! {
    a_password_change_ends_outstanding_reset_links(&[]),
}

#[tokio::test]
async fn answers_that_carry_a_secret_are_not_stored_by_caches() {
    let app = TestApp::spawn().await;
    app.verified_user("ada@example.com").await;
    let no_store = |response: &reqwest::Response| {
        assert_eq!(response.status().as_u16() / 100, 2, "{}", response.url());
        assert_eq!(response.headers()["cache-control"], "no-store", "{}", response.url());
    };
    let login = app.login("ada@example.com", PASSWORD).await;
    no_store(&login);
    let tokens: Value = login.json().await.unwrap();
    let refreshed = app
        .post("/v1/auth/refresh", json!({"refresh_token": tokens["refresh_token"]}))
        .await;
    no_store(&refreshed);
    let tokens: Value = refreshed.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    let key = app
        .post_auth("/v1/api-keys", access, json!({"name": "ci", "scopes": ["agents:read"]}))
        .await;
    no_store(&key);
    let key: Value = key.json().await.unwrap();
    let rotated = app
        .post_auth(
            &format!("/v1/api-keys/{}/rotate", key["id"].as_str().unwrap()),
            access,
            json!({}),
        )
        .await;
    no_store(&rotated);
    no_store(&app.post_auth("/v1/me/mfa/totp", access, json!({})).await);
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_and_its_files_are_readable_by_the_service_alone() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let app = TestApp::with(&[("AUTH_DATA_DIR", data.to_str().unwrap())]).await;
    app.signup("ada@example.com").await;
    let outbox = data.join("outbox");
    for _ in 0..100 {
        if read_mails(&outbox).len() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(read_mails(&outbox).len(), 1, "the signup mail");
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&data)
        .unwrap()
        .chain(std::fs::read_dir(&outbox).unwrap())
    {
        let path = entry.unwrap().path();
        let expected = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&path), expected, "{}", path.display());
        checked.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    for file in ["auth.db", "jwt-signing-key.pem", "secret.key", "outbox"] {
        assert!(checked.iter().any(|c| c == file), "{file} in {checked:?}");
    }
    assert!(checked.iter().any(|c| c.ends_with(".eml")), "{checked:?}");
    drop(app);
}

#[tokio::test]
async fn a_full_width_look_alike_of_an_address_is_the_same_account() {
    let app = TestApp::spawn().await;
    app.verified_user("ada@example.com").await;
    let look_alike = "ＡＤＡ＠ｅｘａｍｐｌｅ．ｃｏｍ";
    assert_eq!(app.login(look_alike, PASSWORD).await.status(), 200);
    // Signing up with it is signing up with the taken address: the same
    // answer as any signup, and no second account.
    let before = app.mails().len();
    let signup = json!({"name": "Mallory", "email": look_alike, "password": "another fine passphrase"});
    assert_eq!(app.post("/v1/auth/signup", signup).await.status(), 202);
    let mails = app.wait_for_mails(before + 1).await;
    assert!(
        mails.last().unwrap().contains("ada@example.com"),
        "{}",
        mails.last().unwrap()
    );
    problem(
        app.login("ada@example.com", "another fine passphrase").await,
        401,
        "invalid_credentials",
    )
    .await;
}
