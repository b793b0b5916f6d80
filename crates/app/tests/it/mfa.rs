//! Two-factor authentication and the audit trail, through the API and the CLI.

use super::harness::*;
use convosphere_domain::mfa::{step_of, TotpSecret};
use reqwest::StatusCode;
use serde_json::{json, Value};

on_both_backends!(
    totp_turns_on_with_a_code_and_then_guards_every_login(&[]),
    the_audit_trail_lists_what_happened_newest_first(&[]),
);

/// The code of the step `offset` steps from now.
pub fn code(secret: &str, offset: i64) -> String {
    let secret = TotpSecret::from_bytes(data_encoding::BASE32_NOPAD.decode(secret.as_bytes()).unwrap());
    format!("{:06}", secret.code_at_step(step_of(chrono::Utc::now()) + offset))
}

/// Turns 2FA on; returns the base32 secret and the recovery codes.
pub async fn enable_totp(app: &TestApp, access: &str) -> (String, Vec<String>) {
    let setup = app.post_auth("/v1/me/mfa/totp", access, json!({})).await;
    assert_eq!(setup.status(), 200);
    assert_eq!(setup.headers()["cache-control"], "no-store");
    let setup: Value = setup.json().await.unwrap();
    let secret = setup["secret"].as_str().unwrap().to_owned();
    let confirmed = app
        .post_auth("/v1/me/mfa/totp/confirm", access, json!({"code": code(&secret, 0)}))
        .await;
    assert_eq!(confirmed.status(), 200);
    let codes: Vec<String> = confirmed.json::<Value>().await.unwrap()["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    (secret, codes)
}

async fn login_with(app: &TestApp, extra: Value) -> reqwest::Response {
    let mut body = json!({"email": "ada@example.com", "password": PASSWORD});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    app.post("/v1/auth/login", body).await
}

async fn totp_turns_on_with_a_code_and_then_guards_every_login(app: TestApp) {
    let access = app.signed_in("ada@example.com").await;

    let setup: Value = app
        .post_auth("/v1/me/mfa/totp", &access, json!({}))
        .await
        .json()
        .await
        .unwrap();
    let secret = setup["secret"].as_str().unwrap();
    assert_eq!(secret.len(), 32, "160 bits in base32");
    let uri = setup["otpauth_uri"].as_str().unwrap();
    assert!(
        uri.starts_with("otpauth://totp/Convosphere%20AI%3Aada%40example.com?secret="),
        "{uri}"
    );
    assert!(uri.contains(secret) && uri.contains("digits=6") && uri.contains("period=30"));
    // Not on until confirmed.
    assert_eq!(app.login("ada@example.com", PASSWORD).await.status(), 200);
    problem(
        app.post_auth("/v1/me/mfa/totp/confirm", &access, json!({"code": "000000"}))
            .await,
        401,
        "invalid_mfa_code",
    )
    .await;
    problem(
        app.post_auth("/v1/me/mfa/totp/confirm", &access, json!({})).await,
        422,
        "validation_failed",
    )
    .await;

    let (secret, recovery) = enable_totp(&app, &access).await;
    assert_eq!(recovery.len(), 10);
    let me: Value = app.get_auth("/v1/me", &access).await.json().await.unwrap();
    assert_eq!(me["user"]["mfa_enabled"], true);
    problem(
        app.post_auth("/v1/me/mfa/totp", &access, json!({})).await,
        409,
        "mfa_already_enabled",
    )
    .await;

    // The right password alone is not enough; a wrong one never tells 2FA is on.
    problem(app.login("ada@example.com", PASSWORD).await, 401, "mfa_required").await;
    problem(
        login_with(
            &app,
            json!({"password": "wrong password!", "totp_code": code(&secret, 1)}),
        )
        .await,
        401,
        "invalid_credentials",
    )
    .await;
    problem(
        login_with(&app, json!({"totp_code": "123456"})).await,
        401,
        "invalid_mfa_code",
    )
    .await;
    // The confirming code was spent; the next step's code (within the drift) works once.
    problem(
        login_with(&app, json!({"totp_code": code(&secret, 0)})).await,
        401,
        "invalid_mfa_code",
    )
    .await;
    let next = code(&secret, 1);
    let tokens: Value = login_with(&app, json!({"totp_code": next})).await.json().await.unwrap();
    assert_eq!(tokens["user"]["mfa_enabled"], true);
    problem(
        login_with(&app, json!({"totp_code": next})).await,
        401,
        "invalid_mfa_code",
    )
    .await;

    // Recovery codes: each once, however typed.
    let response = login_with(&app, json!({"recovery_code": recovery[0].to_uppercase()})).await;
    assert_eq!(response.status(), StatusCode::OK);
    problem(
        login_with(&app, json!({"recovery_code": recovery[0]})).await,
        401,
        "invalid_mfa_code",
    )
    .await;

    // Off only with the password.
    let access = tokens["access_token"].as_str().unwrap();
    let off = |password: &str| {
        app.client
            .delete(app.url("/v1/me/mfa/totp"))
            .bearer_auth(access)
            .json(&json!({ "password": password }))
            .send()
    };
    problem(off("wrong password!").await.unwrap(), 401, "invalid_credentials").await;
    assert_eq!(off(PASSWORD).await.unwrap().status(), 204);
    assert_eq!(app.login("ada@example.com", PASSWORD).await.status(), 200);
}

async fn the_audit_trail_lists_what_happened_newest_first(app: TestApp) {
    app.verified_user("ada@example.com").await;
    app.login("ada@example.com", "wrong password!").await;
    let access = app.tokens("ada@example.com").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = app.new_key(&access, "ci", &["chat:read"]).await;
    let key_text = key["key"].as_str().unwrap();

    let response = app.get_auth("/v1/me/events", &access).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(
        !text.contains(key_text) && !text.contains(PASSWORD),
        "no secrets: {text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap();
    let types = event_types(&body);
    assert_eq!(
        types,
        [
            "api_key_created",
            "login_succeeded",
            "login_failed",
            "email_verified",
            "signup"
        ]
    );
    assert_eq!(body["next"], Value::Null);
    let created = &body["events"][0];
    assert_eq!(created["ip"], "127.0.0.1");
    assert_eq!(created["user_agent"], "convosphere-tests/1.0");
    assert_eq!(created["details"]["prefix"], key["prefix"]);
    assert_eq!(body["events"][2]["details"]["reason"], "invalid_password");
    assert!(created["at"].as_str().unwrap().ends_with('Z'));

    // Pages of two, by the `next` cursor.
    let first: Value = app
        .get_auth("/v1/me/events?limit=2", &access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["events"].as_array().unwrap().len(), 2);
    let cursor = first["next"].as_str().unwrap();
    let second: Value = app
        .get_auth(&format!("/v1/me/events?limit=2&before={cursor}"), &access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(second["events"][0]["type"], "login_failed");
    problem(
        app.get_auth("/v1/me/events?limit=0", &access).await,
        400,
        "invalid_request",
    )
    .await;
    problem(
        app.get_auth("/v1/me/events?before=yesterday", &access).await,
        400,
        "invalid_request",
    )
    .await;
    problem(
        app.get_auth("/v1/me/events", key_text).await,
        403,
        "user_token_required",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_totp_code_logs_in_once_under_parallel_requests() {
    let app = TestApp::spawn().await;
    let access = app.signed_in("ada@example.com").await;
    let (secret, _) = enable_totp(&app, &access).await;
    let next = code(&secret, 1);
    let logins = (0..6).map(|_| login_with(&app, json!({"totp_code": next})));
    let statuses: Vec<u16> = futures_util::future::join_all(logins)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 401), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_read_an_accounts_events() {
    let app = TestApp::spawn().await;
    app.verified_user("ada@example.com").await;
    app.login("ada@example.com", "wrong password!").await;
    let output = run_cli(app.dir.path(), &["user", "events", "Ada@Example.com"], &[]);
    assert!(output.status.success(), "{}", super::cli::stderr(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].contains("login_failed") && lines[0].contains("reason=\"invalid_password\""),
        "{stdout}"
    );
    assert!(
        lines[0].contains("127.0.0.1") && lines[0].contains("convosphere-tests/1.0"),
        "{stdout}"
    );
    assert!(lines[2].contains("signup"));
    let unknown = run_cli(app.dir.path(), &["user", "events", "nobody@example.com"], &[]);
    assert_eq!(unknown.status.code(), Some(1));
}
