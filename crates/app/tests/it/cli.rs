//! The binary: commands, exit codes, configuration errors, logs without secrets.

use super::harness::run_cli as run;
use super::harness::*;
use std::process::{Command, Output};

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn migrate_applies_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let output = run(dir.path(), &["migrate"], &[]);
        assert!(output.status.success(), "{}", stderr(&output));
    }
    assert!(dir.path().join("auth.db").exists());
}

#[test]
fn user_errors_exit_1_with_one_line_and_bad_usage_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(dir.path(), &["user", "set-plan", "nobody@example.com", "pro"], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stderr(&output).trim().lines().count(), 1, "{}", stderr(&output));
    assert!(stderr(&output).contains("nobody@example.com"));

    let output = run(dir.path(), &["user", "set-plan", "nobody@example.com", "platinum"], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("platinum"));

    assert_eq!(run(dir.path(), &["user", "frobnicate"], &[]).status.code(), Some(2));
    assert_eq!(run(dir.path(), &["user", "lock"], &[]).status.code(), Some(2));
}

#[test]
fn a_bad_setting_stops_start_up_with_a_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(dir.path(), &["serve"], &[("AUTH_ACCESS_TOKEN_TTL", "soon")]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("AUTH_ACCESS_TOKEN_TTL"), "{}", stderr(&output));
    let output = run(
        dir.path(),
        &["serve"],
        &[("AUTH_DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("AUTH_DATABASE_URL"), "{}", stderr(&output));
}

#[tokio::test]
async fn operators_set_plans_verify_and_unlock_accounts() {
    let app = TestApp::with(&[("AUTH_LOCKOUT_THRESHOLD", "2")]).await;
    app.signup("ada@example.com").await;
    app.wait_for_mails(1).await;
    let db = app.database_url.clone();
    let env: Vec<(&str, &str)> = db.iter().map(|url| ("AUTH_DATABASE_URL", url.as_str())).collect();
    let dir = app.dir.path();
    assert!(run(dir, &["user", "verify-email", "ADA@example.com"], &env)
        .status
        .success());
    assert!(run(dir, &["user", "set-plan", "ada@example.com", "business"], &env)
        .status
        .success());
    let pair = app.tokens("ada@example.com").await;
    assert_eq!(pair["user"]["plan"], "business");
    assert_eq!(pair["user"]["email_verified"], true);

    for _ in 0..2 {
        app.login("ada@example.com", "wrong password!").await;
    }
    problem(app.login("ada@example.com", PASSWORD).await, 403, "account_locked").await;
    assert!(run(dir, &["user", "unlock", "ada@example.com"], &env).status.success());
    assert_eq!(app.login("ada@example.com", PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn logs_never_hold_passwords_or_tokens() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bind = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_convosphere-auth"))
        .env("AUTH_DATA_DIR", dir.path())
        .env("AUTH_BIND", &bind)
        .env("AUTH_LOG_FORMAT", "json")
        .env("RUST_LOG", "debug")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://{bind}");
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..100 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ready, "the service did not start");
    let signup = serde_json::json!({"name": "Ada", "email": "ada@example.com", "password": PASSWORD});
    client
        .post(format!("{base}/v1/auth/signup"))
        .json(&signup)
        .send()
        .await
        .unwrap();
    let mails = loop {
        let mails = read_mails(&dir.path().join("outbox"));
        if !mails.is_empty() {
            break mails;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let token = link_token(
        &mails[0].replace("http://127.0.0.1:8080", "http://auth.test"),
        "/verify-email",
    )
    .unwrap();
    client
        .post(format!("{base}/v1/auth/verify-email"))
        .json(&serde_json::json!({"token": token}))
        .send()
        .await
        .unwrap();
    let login = serde_json::json!({"email": "ada@example.com", "password": PASSWORD});
    let pair: serde_json::Value = client
        .post(format!("{base}/v1/auth/login"))
        .json(&login)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refresh = pair["refresh_token"].as_str().unwrap().to_owned();
    let access = pair["access_token"].as_str().unwrap().to_owned();
    client
        .get(format!("{base}/v1/me"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    client
        .post(format!("{base}/v1/auth/refresh"))
        .json(&serde_json::json!({"refresh_token": refresh}))
        .send()
        .await
        .unwrap();
    client
        .post(format!("{base}/v1/auth/login"))
        .json(&serde_json::json!({"email": "ada@example.com", "password": "wrong password!"}))
        .send()
        .await
        .unwrap();

    // SIGTERM: graceful shutdown.
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "graceful shutdown exits 0");
    let mut logs = String::new();
    child.stderr.take().unwrap().read_to_string(&mut logs).unwrap();
    assert!(logs.contains("\"request\""), "no request logs: {logs}");
    for secret in [PASSWORD, "wrong password!", &refresh, &access] {
        assert!(!logs.contains(secret), "a secret was logged");
    }
    // The outbox link is the one logged secret, by contract; the login's tokens never are.
    assert!(!logs.contains(&access[..40]));
}
