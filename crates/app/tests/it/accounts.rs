//! Signup, verification, login and password flows.

use super::harness::*;
use serde_json::{json, Value};

async fn a_new_user_signs_up_verifies_and_logs_in(app: TestApp) {
    let response = app.signup("  Ada@Example.com ").await;
    assert_eq!(response.status(), 202);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"status": "verification_sent"})
    );

    let mails = app.wait_for_mails(1).await;
    assert!(mails[0].contains("<ada@example.com>"), "{}", mails[0]);
    assert!(mails[0].contains("text/plain") && mails[0].contains("text/html"));
    let token = link_token(&mails[0], "/verify-email").unwrap();
    assert!(token.len() >= 43);

    problem(app.login("ada@example.com", PASSWORD).await, 403, "email_not_verified").await;

    let verified: Value = app
        .post("/v1/auth/verify-email", json!({ "token": token }))
        .await
        .json()
        .await
        .unwrap();
    let user = &verified["user"];
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(user["email_verified"], true);
    assert_eq!(user["plan"], "free");
    assert_eq!(user["company"], "Analytical Engines");
    assert_eq!(user["mfa_enabled"], false);
    assert!(user["created_at"].as_str().unwrap().ends_with('Z'));
    // The link works once.
    problem(
        app.post("/v1/auth/verify-email", json!({ "token": token })).await,
        400,
        "link_invalid",
    )
    .await;

    let pair = app.tokens("ADA@example.com").await;
    assert_eq!(pair["token_type"], "Bearer");
    assert_eq!(pair["expires_in"], 900);
    assert_eq!(pair["refresh_expires_in"], 7 * 24 * 3600);
    assert_eq!(pair["user"]["email"], "ada@example.com");
    let me: Value = app
        .get_auth("/v1/me", pair["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"]["id"], user["id"]);
    assert_eq!(me["principal"]["type"], "user");
    assert_eq!(me["principal"]["session_id"], pair["session_id"]);
    assert_eq!(me["principal"]["scopes"].as_array().unwrap().len(), 10);
}

#[tokio::test]
async fn signup_with_a_taken_address_answers_the_same_and_warns_the_owner() {
    let app = TestApp::spawn().await;
    app.verified_user("ada@example.com").await;
    let response = app.signup("ADA@example.com").await;
    assert_eq!(response.status(), 202);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"status": "verification_sent"})
    );
    let mails = app.wait_for_mails(2).await;
    assert!(link_token(&mails[1], "/verify-email").is_none());
    assert!(mails[1].contains("http://auth.test/forgot-password"), "{}", mails[1]);
}

#[tokio::test]
async fn invalid_signups_are_refused_field_by_field_and_create_nothing() {
    let app = TestApp::spawn().await;
    let body = problem(
        app.post(
            "/v1/auth/signup",
            json!({"email": "not-an-address", "password": "short"}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    let fields: Vec<(&str, &str)> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["field"].as_str().unwrap(), e["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        fields,
        [
            ("name", "required"),
            ("email", "invalid_email"),
            ("password", "too_short")
        ]
    );

    let weak = json!({"name": "Ada", "email": "ada@example.com", "password": "password123"});
    let body = problem(app.post("/v1/auth/signup", weak).await, 422, "password_too_weak").await;
    assert_eq!(body["errors"][0]["field"], "password");
    let long = "x9$Qm".repeat(26);
    problem(
        app.post(
            "/v1/auth/signup",
            json!({"name": "Ada", "email": "ada@example.com", "password": long}),
        )
        .await,
        422,
        "password_too_weak",
    )
    .await;
    problem(
        app.post(
            "/v1/auth/signup",
            json!({"name": "Ada", "email": "ada@example.com", "password": "ada@example.com"}),
        )
        .await,
        422,
        "password_too_weak",
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(app.mails().is_empty());
    // Nothing was created: a real signup of the same address gets a verification link.
    assert_eq!(app.signup("ada@example.com").await.status(), 202);
    assert!(link_token(&app.wait_for_mails(1).await[0], "/verify-email").is_some());
}

#[tokio::test]
async fn malformed_requests_get_invalid_request_and_big_ones_payload_too_large() {
    let app = TestApp::spawn().await;
    let url = app.url("/v1/auth/login");
    let bad_json = app
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body("{\"email\":")
        .send()
        .await;
    problem(bad_json.unwrap(), 400, "invalid_request").await;
    let wrong_type = app
        .client
        .post(&url)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await;
    problem(wrong_type.unwrap(), 400, "invalid_request").await;
    problem(
        app.post("/v1/auth/login", json!({"email": 42, "password": "x"})).await,
        400,
        "invalid_request",
    )
    .await;
    let body = problem(app.post("/v1/auth/login", json!({})).await, 422, "validation_failed").await;
    assert_eq!(body["errors"].as_array().unwrap().len(), 2);
    let huge = json!({"email": "a@b.co", "password": "x".repeat(70 * 1024)});
    problem(app.post("/v1/auth/login", huge).await, 413, "payload_too_large").await;
}

#[tokio::test]
async fn unknown_email_and_wrong_password_get_the_same_answer() {
    let app = TestApp::spawn().await;
    app.verified_user("ada@example.com").await;
    let unknown = problem(
        app.login("nobody@example.com", PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
    let response = app.login("ada@example.com", "wrong password!").await;
    assert!(response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    let wrong = problem(response, 401, "invalid_credentials").await;
    assert_eq!(unknown, wrong);
}

#[tokio::test]
async fn lockout_is_told_only_with_the_right_password_and_reset_lifts_it() {
    let app = TestApp::with(&[("AUTH_LOCKOUT_THRESHOLD", "3")]).await;
    app.verified_user("ada@example.com").await;
    for _ in 0..4 {
        problem(
            app.login("ada@example.com", "wrong password!").await,
            401,
            "invalid_credentials",
        )
        .await;
    }
    problem(app.login("ada@example.com", PASSWORD).await, 403, "account_locked").await;

    assert_eq!(
        app.post("/v1/auth/password/forgot", json!({"email": "ada@example.com"}))
            .await
            .status(),
        202
    );
    let token = app.wait_for_link(2, "/reset-password").await;
    let reset = app.post(
        "/v1/auth/password/reset",
        json!({"token": token, "password": "a brand new passphrase"}),
    );
    assert_eq!(reset.await.status(), 204);
    assert_eq!(
        app.login("ada@example.com", "a brand new passphrase").await.status(),
        200
    );
}

#[tokio::test]
async fn lockout_ends_after_its_duration() {
    let app = TestApp::with(&[("AUTH_LOCKOUT_THRESHOLD", "2"), ("AUTH_LOCKOUT_DURATION", "1s")]).await;
    app.verified_user("ada@example.com").await;
    for _ in 0..2 {
        app.login("ada@example.com", "wrong password!").await;
    }
    problem(app.login("ada@example.com", PASSWORD).await, 403, "account_locked").await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(app.login("ada@example.com", PASSWORD).await.status(), 200);
}

async fn password_reset_ends_every_session_and_the_link_works_once(app: TestApp) {
    app.verified_user("ada@example.com").await;
    let pair = app.tokens("ada@example.com").await;
    let access = pair["access_token"].as_str().unwrap();

    // Unknown addresses get the same answer and no mail.
    let response = app
        .post("/v1/auth/password/forgot", json!({"email": "nobody@example.com"}))
        .await;
    assert_eq!(response.status(), 202);
    assert_eq!(
        app.post("/v1/auth/password/forgot", json!({"email": "Ada@Example.com"}))
            .await
            .status(),
        202
    );
    let mails = app.wait_for_mails(2).await;
    assert_eq!(mails.len(), 2);
    let token = link_token(&mails[1], "/reset-password").unwrap();

    // A refused password changes nothing: the link still works after.
    let weak = app
        .post("/v1/auth/password/reset", json!({"token": token, "password": "short"}))
        .await;
    problem(weak, 422, "password_too_weak").await;
    let ok = app
        .post(
            "/v1/auth/password/reset",
            json!({"token": token, "password": "a brand new passphrase"}),
        )
        .await;
    assert_eq!(ok.status(), 204);
    let again = app
        .post(
            "/v1/auth/password/reset",
            json!({"token": token, "password": "another passphrase 2"}),
        )
        .await;
    problem(again, 400, "link_invalid").await;

    problem(app.get_auth("/v1/me", access).await, 401, "session_expired").await;
    problem(app.login("ada@example.com", PASSWORD).await, 401, "invalid_credentials").await;
    assert_eq!(
        app.login("ada@example.com", "a brand new passphrase").await.status(),
        200
    );
}

#[tokio::test]
async fn a_newer_link_makes_the_older_one_invalid() {
    let app = TestApp::spawn().await;
    app.signup("ada@example.com").await;
    let first = app.wait_for_link(1, "/verify-email").await;
    let response = app
        .post("/v1/auth/verify-email/resend", json!({"email": "ada@example.com"}))
        .await;
    assert_eq!(response.status(), 202);
    let second = app.wait_for_link(2, "/verify-email").await;
    problem(
        app.post("/v1/auth/verify-email", json!({"token": first})).await,
        400,
        "link_invalid",
    )
    .await;
    assert_eq!(
        app.post("/v1/auth/verify-email", json!({"token": second}))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn verification_links_expire() {
    let app = TestApp::with(&[("AUTH_EMAIL_VERIFY_TTL", "1s")]).await;
    app.signup("ada@example.com").await;
    let token = app.wait_for_link(1, "/verify-email").await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    problem(
        app.post("/v1/auth/verify-email", json!({"token": token})).await,
        400,
        "link_invalid",
    )
    .await;
}

#[tokio::test]
async fn password_change_keeps_this_session_and_ends_the_others() {
    let app = TestApp::spawn().await;
    app.verified_user("ada@example.com").await;
    let mine = app.tokens("ada@example.com").await;
    let other = app.tokens("ada@example.com").await;
    let access = mine["access_token"].as_str().unwrap();
    let wrong = json!({"current_password": "not my password", "new_password": "a brand new passphrase"});
    problem(
        app.post_auth("/v1/auth/password/change", access, wrong).await,
        401,
        "invalid_credentials",
    )
    .await;
    let weak = json!({"current_password": PASSWORD, "new_password": "12345678"});
    problem(
        app.post_auth("/v1/auth/password/change", access, weak).await,
        422,
        "password_too_weak",
    )
    .await;
    let change = json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"});
    assert_eq!(
        app.post_auth("/v1/auth/password/change", access, change).await.status(),
        204
    );
    assert_eq!(app.get_auth("/v1/me", access).await.status(), 200);
    problem(
        app.get_auth("/v1/me", other["access_token"].as_str().unwrap()).await,
        401,
        "session_expired",
    )
    .await;
    assert_eq!(
        app.login("ada@example.com", "a brand new passphrase").await.status(),
        200
    );
}

#[tokio::test]
async fn the_profile_can_be_changed_and_optional_fields_cleared() {
    let app = TestApp::spawn().await;
    app.verified_user("ada@example.com").await;
    let pair = app.tokens("ada@example.com").await;
    let access = pair["access_token"].as_str().unwrap();
    let patch = |body: Value| {
        app.client
            .patch(app.url("/v1/me"))
            .bearer_auth(access)
            .json(&body)
            .send()
    };
    let user: Value = patch(json!({"name": "Countess Ada", "company": null, "phone": "+44 20 7946 0958"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(user["name"], "Countess Ada");
    assert_eq!(user["company"], Value::Null);
    assert_eq!(user["phone"], "+44 20 7946 0958");
    assert_eq!(user["email"], "ada@example.com");
    let body = problem(
        patch(json!({"name": "", "phone": "call me"})).await.unwrap(),
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(body["errors"].as_array().unwrap().len(), 2);
    let me: Value = app.get_auth("/v1/me", access).await.json().await.unwrap();
    assert_eq!(me["user"]["name"], "Countess Ada");
}

on_both_backends! {
    a_new_user_signs_up_verifies_and_logs_in(&[]),
    password_reset_ends_every_session_and_the_link_works_once(&[]),
}

#[tokio::test]
async fn the_export_holds_every_record_of_the_account_and_no_secret() {
    let app = TestApp::spawn().await;
    let access = app.signed_in("ada@example.com").await;
    let created = app.new_key(&access, "Production", &["agents:read"]).await;
    let key = created["key"].as_str().unwrap().to_owned();
    assert_eq!(app.get_auth("/v1/authz?scope=agents:read", &key).await.status(), 200);
    // The pages offer the same document for download.
    let mut browser = crate::web::Browser::new(&app);
    browser.log_in("ada@example.com").await;
    let dashboard = browser.get("/dashboard").await;
    assert!(dashboard.body.contains("href=\"/settings/account/export\""));
    let download = browser.get("/settings/account/export").await;
    assert_eq!(download.status, 200);
    assert!(download.header("content-disposition").starts_with("attachment;"));
    let document: Value = serde_json::from_str(&download.body).unwrap();
    assert_eq!(document["user"]["email"], "ada@example.com");
    assert_eq!(
        document["sessions"].as_array().unwrap().len(),
        2,
        "the API's session and the browser's"
    );

    assert_eq!(document["pending_email_change"], Value::Null);

    let (secret, recovery_codes) = crate::mfa::enable_totp(&app, &access).await;
    // A change of address waiting for its link is in it; the link is not.
    let new = "ada.lovelace@example.com";
    let asked = app.post_auth("/v1/me/email", &access, json!({"email": new})).await;
    assert_eq!(asked.status(), 202);
    let link = crate::lifecycle::wait_for_mail_to(&app, new, "Confirm your new email address").await;
    let link = link_token(&link, "/confirm-email").unwrap();
    // The key's use is written within a few seconds.
    let mut export = Value::Null;
    for _ in 0..60 {
        let response = app.get_auth("/v1/me/export", &access).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["cache-control"], "no-store");
        let disposition = response.headers()["content-disposition"].to_str().unwrap().to_owned();
        assert!(
            disposition.starts_with("attachment; filename=\"convosphere-account-"),
            "{disposition}"
        );
        export = response.json().await.unwrap();
        if export["usage"].as_array().is_some_and(|days| !days.is_empty()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(export["user"]["email"], "ada@example.com");
    assert_eq!(export["user"]["company"], "Analytical Engines");
    assert_eq!(
        export["two_factor"],
        json!({"enabled": true, "recovery_codes_left": 10})
    );
    let sessions = export["sessions"].as_array().unwrap();
    assert!(!sessions.is_empty());
    assert_eq!(
        sessions.iter().filter(|s| s["current"] == true).count(),
        1,
        "the session that asked"
    );
    assert_eq!(export["api_keys"][0]["prefix"], &key[..11]);
    assert!(export["api_keys"][0].get("key").is_none());
    assert_eq!(export["api_keys"][0]["last_used_ip"], "127.0.0.1");
    assert_eq!(export["api_keys"][0]["usage"][0]["allowed"], 1);
    assert_eq!(export["identities"], json!([]));
    assert_eq!(export["pending_email_change"]["email"], new);
    assert!(export["pending_email_change"]["expires_at"].is_string());
    let kinds = event_types(&export);
    for kind in [
        "signup",
        "email_verified",
        "login_succeeded",
        "api_key_created",
        "mfa_enabled",
        "email_change_requested",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    assert!(
        export["usage"][0]["allowed"].as_u64().unwrap() >= 2,
        "{}",
        export["usage"]
    );
    // Nothing secret: not the key, its hash, the TOTP secret, a recovery code or a password hash.
    let text = export.to_string();
    assert!(!text.contains(&key[12..44]));
    assert!(!text.contains(&secret));
    assert!(!text.contains(&link));
    assert!(recovery_codes.iter().all(|code| !text.contains(code.as_str())));
    assert!(!text.contains("argon2"));
    assert!(!text.contains("secret_hash") && !text.contains("password_hash"));
    // An API key cannot take it.
    problem(app.get_auth("/v1/me/export", &key).await, 403, "user_token_required").await;
}
