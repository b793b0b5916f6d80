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

async fn sensitive_actions_need_a_recent_sign_in(app: TestApp) {
    app.verified_user("ada@example.com").await;
    let tokens = app.tokens("ada@example.com").await;
    let access = tokens["access_token"].as_str().unwrap();
    let signed_in = claims(access);
    assert_eq!(signed_in["amr"], json!(["pwd"]));
    assert_eq!(signed_in["auth_time"], signed_in["iat"]);
    let key = json!({"name": "ci", "scopes": ["agents:read"]});
    let created: Value = app
        .post_auth("/v1/api-keys", access, key.clone())
        .await
        .json()
        .await
        .unwrap();
    let rotate = format!("/v1/api-keys/{}/rotate", created["id"].as_str().unwrap());

    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    problem(
        app.post_auth("/v1/api-keys", access, key.clone()).await,
        403,
        "reauthentication_required",
    )
    .await;
    problem(
        app.post_auth(&rotate, access, json!({})).await,
        403,
        "reauthentication_required",
    )
    .await;
    problem(
        app.post_auth("/v1/me/mfa/totp", access, json!({})).await,
        403,
        "reauthentication_required",
    )
    .await;
    // Nothing changed: one key, still active; 2FA not begun.
    let keys: Value = app.get_auth("/v1/api-keys", access).await.json().await.unwrap();
    assert_eq!(keys["api_keys"].as_array().unwrap().len(), 1);
    assert_eq!(keys["api_keys"][0]["status"], "active");

    let wrong = json!({"password": "not my password"});
    problem(
        app.post_auth("/v1/auth/reauthenticate", access, wrong).await,
        401,
        "invalid_credentials",
    )
    .await;
    let again = app
        .post_auth("/v1/auth/reauthenticate", access, json!({"password": PASSWORD}))
        .await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["cache-control"], "no-store");
    let renewed: Value = again.json().await.unwrap();
    assert_eq!(renewed["session_id"], tokens["session_id"]);
    let fresh = renewed["access_token"].as_str().unwrap();
    assert!(claims(fresh)["auth_time"].as_i64() > signed_in["auth_time"].as_i64());
    assert_eq!(app.post_auth(&rotate, fresh, json!({})).await.status(), 201);
    assert_eq!(app.post_auth("/v1/api-keys", fresh, key).await.status(), 201);

    // An API key can never re-authenticate (nor do what needs it).
    let created = app.new_key(fresh, "bot", &["agents:read"]).await;
    let api_key = created["key"].as_str().unwrap();
    let by_key = app.post_auth("/v1/auth/reauthenticate", api_key, json!({"password": PASSWORD}));
    problem(by_key.await, 403, "user_token_required").await;

    // The refresh token from before is used up: presenting it is a reuse.
    let old = json!({"refresh_token": tokens["refresh_token"]});
    problem(app.post("/v1/auth/refresh", old).await, 401, "invalid_token").await;
}

async fn a_password_change_counts_as_a_recent_sign_in(app: TestApp) {
    app.verified_user("ada@example.com").await;
    let tokens = app.tokens("ada@example.com").await;
    let access = tokens["access_token"].as_str().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let key = json!({"name": "ci", "scopes": ["agents:read"]});
    problem(
        app.post_auth("/v1/api-keys", access, key.clone()).await,
        403,
        "reauthentication_required",
    )
    .await;
    let change = json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"});
    assert_eq!(
        app.post_auth("/v1/auth/password/change", access, change).await.status(),
        204
    );
    assert_eq!(app.post_auth("/v1/api-keys", access, key).await.status(), 201);
    // Its refresh token goes on working.
    let refresh = json!({"refresh_token": tokens["refresh_token"]});
    assert_eq!(app.post("/v1/auth/refresh", refresh).await.status(), 200);
}

on_both_backends! {
    sensitive_actions_need_a_recent_sign_in(&[("AUTH_REAUTH_WINDOW", "2s")]),
    a_password_change_counts_as_a_recent_sign_in(&[("AUTH_REAUTH_WINDOW", "2s")]),
}

#[tokio::test]
async fn the_pages_ask_for_the_password_and_return_to_the_action() {
    let app = TestApp::with(&[("AUTH_REAUTH_WINDOW", "2s")]).await;
    app.verified_user("ada@example.com").await;
    let mut ada = crate::web::Browser::new(&app);
    ada.log_in("ada@example.com").await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let csrf = ada.get("/settings/api-keys").await.csrf();
    let create = [("csrf", csrf.as_str()), ("name", "ci"), ("scopes", "chat:read")];
    let page = ada.post("/settings/api-keys", &create).await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(
        page.header("location"),
        "/settings/reauthenticate?next=%2Fsettings%2Fapi-keys"
    );

    let prompt = ada.get("/settings/reauthenticate?next=%2Fsettings%2Fapi-keys").await;
    assert_eq!(prompt.status, 200);
    assert!(prompt.body.contains("type=\"password\""), "{}", prompt.body);
    assert!(prompt.body.contains("Confirm it&#39;s you") || prompt.body.contains("Confirm it's you"));
    let csrf = prompt.csrf();
    let wrong = [
        ("csrf", csrf.as_str()),
        ("next", "/settings/api-keys"),
        ("password", "not my password"),
    ];
    let page = ada.post("/settings/reauthenticate", &wrong).await;
    assert_eq!(page.status, 401);
    assert!(page.body.contains("invalid_credentials"));
    let right = [
        ("csrf", csrf.as_str()),
        ("next", "/settings/api-keys"),
        ("password", PASSWORD),
    ];
    let page = ada.post("/settings/reauthenticate", &right).await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.header("location"), "/settings/api-keys");

    let csrf = ada.get("/settings/api-keys").await.csrf();
    let create = [("csrf", csrf.as_str()), ("name", "ci"), ("scopes", "chat:read")];
    let page = ada.post("/settings/api-keys", &create).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(crate::web::new_key(&page.body).starts_with("cs_"));
}

#[tokio::test]
async fn a_password_reset_keeps_api_keys_and_the_mail_lists_them() {
    let app = TestApp::spawn().await;
    let access = app.signed_in("ada@example.com").await;
    let created = app
        .post_auth(
            "/v1/api-keys",
            &access,
            json!({"name": "nightly export", "scopes": ["agents:read"]}),
        )
        .await;
    let created: Value = created.json().await.unwrap();
    let token = reset_link(&app).await;
    let before = app.mails().len();
    let reset = json!({"token": token, "password": "a brand new passphrase"});
    assert_eq!(app.post("/v1/auth/password/reset", reset).await.status(), 204);
    let mails = app.wait_for_mails(before + 1).await;
    let told = mails.last().unwrap();
    assert!(told.contains("password was reset"), "{told}");
    assert!(told.contains("nightly export"), "{told}");
    assert!(told.contains(created["prefix"].as_str().unwrap()), "{told}");
    assert!(told.contains("http://auth.test/settings/api-keys"), "{told}");
    // The key goes on working for its program.
    let authz = app
        .get_auth("/v1/authz?scope=agents:read", created["key"].as_str().unwrap())
        .await;
    assert_eq!(authz.status(), 200);
}

#[tokio::test]
async fn a_rotated_session_cookie_replayed_after_the_grace_ends_the_session() {
    // Two seconds: the refreshed token has at least one to live (`exp` is in whole seconds).
    let app = TestApp::with(&[("AUTH_ACCESS_TOKEN_TTL", "2s")]).await;
    app.verified_user("ada@example.com").await;
    let mut browser = crate::web::Browser::new(&app);
    browser.log_in("ada@example.com").await;
    let stolen = browser.cookies.clone();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    // The owner's next page refreshes the session: a new cookie.
    assert_eq!(browser.get("/dashboard").await.status, 200);
    assert_ne!(browser.cookies, stolen);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    // The old cookie, replayed after the grace, is a reuse: no page, and the session ends.
    let mut thief = crate::web::Browser::new(&app);
    thief.cookies = stolen;
    let page = thief.get("/dashboard").await;
    assert_eq!(page.status, 303);
    assert!(
        page.header("location").starts_with("/login"),
        "{}",
        page.header("location")
    );
    let owner = browser.get("/dashboard").await;
    assert_eq!(owner.status, 303, "the whole session ended");
}

#[tokio::test]
async fn metrics_can_be_served_on_a_listener_of_their_own() {
    let app = TestApp::with(&[("AUTH_METRICS_BIND", "127.0.0.1:0")]).await;
    let metrics_base = app.metrics_base.clone().expect("a metrics listener");
    assert_ne!(metrics_base, app.base);
    let scrape = app.client.get(format!("{metrics_base}/metrics")).send().await.unwrap();
    assert_eq!(scrape.status(), 200);
    assert!(scrape.text().await.unwrap().contains("# TYPE"));
    // Absent from the public listener, and nothing else on the metrics one.
    assert_eq!(app.client.get(app.url("/metrics")).send().await.unwrap().status(), 404);
    let login = app.client.get(format!("{metrics_base}/v1/me")).send().await.unwrap();
    assert_eq!(login.status(), 404);
    // Without it, /metrics is on the main listener as before.
    let plain = TestApp::spawn().await;
    assert!(plain.metrics_base.is_none());
    assert_eq!(
        plain.client.get(plain.url("/metrics")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn a_totp_secret_copied_to_another_account_does_not_open_there() {
    use diesel::{Connection, RunQueryDsl};
    let app = TestApp::spawn().await;
    let mut secrets = Vec::new();
    for who in ["ada@example.com", "eve@example.com"] {
        let access = app.signed_in(who).await;
        secrets.push(crate::mfa::enable_totp(&app, &access).await.0);
    }
    // Someone who can write the database copies Ada's sealed secret over Eve's.
    let db = app.dir.path().join("auth.db");
    let mut conn = diesel::SqliteConnection::establish(db.to_str().unwrap()).unwrap();
    let copied = diesel::sql_query(
        "UPDATE totp_secrets SET sealed_secret = (SELECT t.sealed_secret FROM totp_secrets t \
         JOIN users u ON u.id = t.user_id WHERE u.email = 'ada@example.com') \
         WHERE user_id = (SELECT id FROM users WHERE email = 'eve@example.com')",
    )
    .execute(&mut conn)
    .unwrap();
    assert_eq!(copied, 1);
    drop(conn);
    // Ada's next code does not sign in as Eve: the secret opens only for its owner.
    let ada_code = crate::mfa::code(&secrets[0], 1);
    let login = json!({"email": "eve@example.com", "password": PASSWORD, "totp_code": ada_code});
    assert_ne!(app.post("/v1/auth/login", login).await.status(), 200);
    // Ada's own login with it works.
    let login = json!({"email": "ada@example.com", "password": PASSWORD, "totp_code": ada_code});
    assert_eq!(app.post("/v1/auth/login", login).await.status(), 200);
}

#[tokio::test]
async fn an_inbox_cannot_be_flooded_from_many_networks() {
    let app = TestApp::with(&[BEHIND_A_PROXY]).await;
    app.verified_user("ada@example.com").await;
    let before = app.mails().len();
    for n in 1..=6 {
        let answer = app
            .client
            .post(app.url("/v1/auth/password/forgot"))
            .header("x-forwarded-for", format!("198.51.100.{n}"))
            .json(&json!({"email": "ada@example.com"}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 202, "the same answer every time");
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(app.mails().len() - before, 2, "at most two a minute to one mailbox");
}

#[tokio::test]
async fn the_old_password_stops_working_at_once_behind_a_session() {
    let app = TestApp::spawn().await;
    let access = app.signed_in("ada@example.com").await;
    assert_eq!(
        app.get_auth("/v1/me", &access).await.status(),
        200,
        "the caller is remembered"
    );
    let change = json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"});
    assert_eq!(
        app.post_auth("/v1/auth/password/change", &access, change)
            .await
            .status(),
        204
    );
    let old = app
        .client
        .delete(app.url("/v1/me/mfa/totp"))
        .bearer_auth(&access)
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap();
    problem(old, 401, "invalid_credentials").await;
}

#[tokio::test]
async fn forged_keys_from_one_network_stop_reaching_the_database() {
    use convosphere_domain::{api_key::GeneratedApiKey, ExposeSecret};
    let app = TestApp::with(&[BEHIND_A_PROXY]).await;
    let access = app.signed_in("ada@example.com").await;
    let created = app
        .post_auth(
            "/v1/api-keys",
            &access,
            json!({"name": "ci", "scopes": ["agents:read"]}),
        )
        .await;
    let key: Value = created.json().await.unwrap();
    let key = key["key"].as_str().unwrap().to_owned();
    let authz = |credential: String, from: &'static str| {
        app.client
            .get(app.url("/v1/authz?scope=agents:read"))
            .bearer_auth(credential)
            .header("x-forwarded-for", from)
            .send()
    };
    let forged = || {
        GeneratedApiKey::generate(&convosphere_crypto::OsRng)
            .key
            .expose_secret()
            .to_owned()
    };
    let mut refused_at = None;
    for n in 0..100 {
        let answer = authz(forged(), "198.51.100.7").await.unwrap();
        if answer.status() == 429 {
            assert!(answer.headers().contains_key("retry-after"));
            refused_at = Some(n);
            break;
        }
        problem(answer, 401, "invalid_api_key").await;
    }
    let refused_at = refused_at.expect("the network is refused after its failed checks");
    assert!((60..=62).contains(&refused_at), "refused after {refused_at} failures");
    // The owner's key, not yet checked from there, is refused there too — and works from elsewhere.
    problem(authz(key.clone(), "198.51.100.7").await.unwrap(), 429, "rate_limited").await;
    assert_eq!(authz(key.clone(), "203.0.113.50").await.unwrap().status(), 200);
    // Checked once, it is remembered: it passes from the refused network as well.
    assert_eq!(authz(key, "198.51.100.7").await.unwrap().status(), 200);
}
