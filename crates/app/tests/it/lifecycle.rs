//! The account's whole life: changing the e-mail address and deleting the
//! account, black-box, on both backends.

use crate::harness::{claims, link_token, problem, TestApp, PASSWORD};
use crate::web::Browser;
use serde_json::{json, Value};
use std::time::Duration;

const ADA: &str = "ada@example.com";
const NEW: &str = "ada.lovelace@example.org";
const BOB: &str = "bob@example.com";

/// The mails whose `To:` names `address`, oldest first.
fn mails_to(app: &TestApp, address: &str) -> Vec<String> {
    app.mails()
        .into_iter()
        .filter(|mail| {
            mail.lines()
                .any(|line| line.starts_with("To:") && line.contains(address))
        })
        .collect()
}

/// Waits for a mail to `address` whose subject holds `subject`.
pub async fn wait_for_mail_to(app: &TestApp, address: &str, subject: &str) -> String {
    for _ in 0..100 {
        if let Some(mail) = mails_to(app, address)
            .into_iter()
            .rev()
            .find(|mail| mail.lines().any(|l| l.starts_with("Subject:") && l.contains(subject)))
        {
            return mail;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no mail to {address} about {subject:?}: {:#?}", app.mails());
}

async fn delete_me(app: &TestApp, token: &str, body: Option<Value>) -> reqwest::Response {
    let request = app.client.delete(app.url("/v1/me")).bearer_auth(token);
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    request.send().await.unwrap()
}

async fn me(app: &TestApp, token: &str) -> reqwest::Response {
    app.get_auth("/v1/me", token).await
}

async fn event_kinds(app: &TestApp, token: &str) -> Vec<Value> {
    let events: Value = app.get_auth("/v1/me/events", token).await.json().await.unwrap();
    events["events"].as_array().unwrap().clone()
}

on_both_backends! {
    a_new_address_takes_over_only_when_its_link_is_used(&[]),
    a_taken_address_answers_the_same_and_its_owner_is_told(&[]),
    a_password_reset_cancels_a_pending_change(&[]),
    the_address_must_be_new_and_valid_and_the_sign_in_recent(&[("AUTH_REAUTH_WINDOW", "2s")]),
    deleting_erases_the_account_and_frees_the_address(&[]),
    deleting_under_parallel_requests_leaves_nothing_behind(&[]),
    the_account_page_changes_the_address_exports_and_deletes(&[]),
}

async fn a_new_address_takes_over_only_when_its_link_is_used(app: TestApp) {
    app.verified_user(ADA).await;
    let asking = app.tokens(ADA).await;
    let asking_access = asking["access_token"].as_str().unwrap();
    let other = app.tokens(ADA).await;
    let other_access = other["access_token"].as_str().unwrap();

    let response = app
        .post_auth("/v1/me/email", asking_access, json!({"email": NEW}))
        .await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"status": "confirmation_sent"}));

    // The new address gets the link; the old one a notice naming the new.
    let link = wait_for_mail_to(&app, NEW, "Confirm your new email address").await;
    let token = link_token(&link, "/confirm-email").expect("a /confirm-email link");
    let notice = wait_for_mail_to(&app, ADA, "change of your").await;
    assert!(notice.contains(NEW), "{notice}");
    assert!(
        link_token(&notice, "/confirm-email").is_none(),
        "no link to the old address"
    );
    assert!(notice.contains("http://auth.test/forgot-password"));

    // Nothing changed yet: the old address still signs in, the new one not.
    assert_eq!(app.login(ADA, PASSWORD).await.status(), 200);
    problem(app.login(NEW, PASSWORD).await, 401, "invalid_credentials").await;
    let account: Value = app.get_auth("/v1/me", asking_access).await.json().await.unwrap();
    assert_eq!(account["user"]["email"], ADA);

    // A reset link mailed to the old address before the change.
    let before = app.mails().len();
    app.post("/v1/auth/password/forgot", json!({"email": ADA})).await;
    let reset = app.wait_for_link(before + 1, "/reset-password").await;

    let confirmed = app.post("/v1/auth/email/confirm", json!({"token": token})).await;
    assert_eq!(confirmed.status(), 200);
    let confirmed: Value = confirmed.json().await.unwrap();
    assert_eq!(confirmed["user"]["email"], NEW);
    assert_eq!(confirmed["user"]["email_verified"], true);

    // The link works once.
    problem(
        app.post("/v1/auth/email/confirm", json!({"token": token})).await,
        400,
        "link_invalid",
    )
    .await;
    // The session that asked stays; the other one ended.
    let account: Value = me(&app, asking_access).await.json().await.unwrap();
    assert_eq!(account["user"]["email"], NEW);
    assert_eq!(me(&app, other_access).await.status(), 401);
    let refreshed = app
        .post("/v1/auth/refresh", json!({"refresh_token": other["refresh_token"]}))
        .await;
    assert_eq!(refreshed.status(), 401);
    // The old address's link died with it.
    let reset = app
        .post(
            "/v1/auth/password/reset",
            json!({"token": reset, "password": "a brand new passphrase"}),
        )
        .await;
    problem(reset, 400, "link_invalid").await;
    // The new address signs in; the old one is no one's.
    assert_eq!(app.login(NEW, PASSWORD).await.status(), 200);
    problem(app.login(ADA, PASSWORD).await, 401, "invalid_credentials").await;

    // The audit trail has both addresses, at the request and at the change.
    let events = event_kinds(&app, asking_access).await;
    for kind in ["email_change_requested", "email_changed"] {
        let event = events
            .iter()
            .find(|e| e["type"] == kind)
            .unwrap_or_else(|| panic!("{kind} in {events:?}"));
        let details = event["details"].to_string();
        assert!(details.contains(ADA) && details.contains(NEW), "{kind}: {details}");
    }

    // The old address is free for a new account.
    let before = app.mails().len();
    assert_eq!(app.signup(ADA).await.status(), 202);
    let verify = app.wait_for_link(before + 1, "/verify-email").await;
    let verified = app.post("/v1/auth/verify-email", json!({"token": verify})).await;
    assert_eq!(verified.status(), 200);
    let newcomer: Value = verified.json().await.unwrap();
    assert_ne!(newcomer["user"]["id"], confirmed["user"]["id"]);
}

async fn a_taken_address_answers_the_same_and_its_owner_is_told(app: TestApp) {
    let ada = app.signed_in(ADA).await;
    app.verified_user(BOB).await;
    let response = app.post_auth("/v1/me/email", &ada, json!({"email": BOB})).await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"status": "confirmation_sent"}));

    let warning = wait_for_mail_to(&app, BOB, "Someone tried to use your email address").await;
    assert!(link_token(&warning, "/confirm-email").is_none());
    // Ada's old address is told as for a free one: the answers look alike.
    let notice = wait_for_mail_to(&app, ADA, "change of your").await;
    assert!(notice.contains(BOB));
    assert!(app.mails().iter().all(|m| link_token(m, "/confirm-email").is_none()));
    let account: Value = me(&app, &ada).await.json().await.unwrap();
    assert_eq!(account["user"]["email"], ADA);
    assert_eq!(app.login(BOB, PASSWORD).await.status(), 200);
}

async fn a_password_reset_cancels_a_pending_change(app: TestApp) {
    let ada = app.signed_in(ADA).await;
    let response = app.post_auth("/v1/me/email", &ada, json!({"email": NEW})).await;
    assert_eq!(response.status(), 202);
    let link = wait_for_mail_to(&app, NEW, "Confirm your new email address").await;
    let change = link_token(&link, "/confirm-email").unwrap();
    wait_for_mail_to(&app, ADA, "change of your").await;

    // "Not you? Reset your password": the reset ends the change too.
    let before = app.mails().len();
    app.post("/v1/auth/password/forgot", json!({"email": ADA})).await;
    let reset = app.wait_for_link(before + 1, "/reset-password").await;
    let response = app
        .post(
            "/v1/auth/password/reset",
            json!({"token": reset, "password": "a brand new passphrase"}),
        )
        .await;
    assert_eq!(response.status(), 204);
    problem(
        app.post("/v1/auth/email/confirm", json!({"token": change})).await,
        400,
        "link_invalid",
    )
    .await;
    assert_eq!(app.login(ADA, "a brand new passphrase").await.status(), 200);
}

async fn the_address_must_be_new_and_valid_and_the_sign_in_recent(app: TestApp) {
    let ada = app.signed_in(ADA).await;
    let before = app.mails().len();
    for (email, code) in [
        ("not an address", "invalid_email"),
        (ADA, "unchanged"),
        (" ADA@Example.com ", "unchanged"),
    ] {
        let body = problem(
            app.post_auth("/v1/me/email", &ada, json!({ "email": email })).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(body["errors"][0]["field"], "email", "{body}");
        assert_eq!(body["errors"][0]["code"], code, "{body}");
    }
    problem(
        app.post_auth("/v1/me/email", &ada, json!({})).await,
        422,
        "validation_failed",
    )
    .await;
    problem(
        app.post("/v1/auth/email/confirm", json!({"token": "made-up"})).await,
        400,
        "link_invalid",
    )
    .await;

    // An API key can never do it.
    let key = app.new_key(&ada, "ci", &["agents:read"]).await;
    let key = key["key"].as_str().unwrap();
    problem(
        app.post_auth("/v1/me/email", key, json!({"email": NEW})).await,
        403,
        "user_token_required",
    )
    .await;

    // Past the window: re-authenticate first, and nothing was sent meanwhile.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    problem(
        app.post_auth("/v1/me/email", &ada, json!({"email": NEW})).await,
        403,
        "reauthentication_required",
    )
    .await;
    assert_eq!(app.mails().len(), before);
    let renewed: Value = app
        .post_auth("/v1/auth/reauthenticate", &ada, json!({"password": PASSWORD}))
        .await
        .json()
        .await
        .unwrap();
    let renewed = renewed["access_token"].as_str().unwrap();
    let response = app.post_auth("/v1/me/email", renewed, json!({"email": NEW})).await;
    assert_eq!(response.status(), 202);
}

/// Rows of `table` whose `column` is `value`.
fn count(app: &TestApp, table: &str, column: &str, value: &str) -> i64 {
    count_where(app, table, &format!("{column} = '{value}'"))
}

/// Rows of `table` that meet `condition` (SQL both backends read alike).
fn count_where(app: &TestApp, table: &str, condition: &str) -> i64 {
    use diesel::{Connection, QueryableByName, RunQueryDsl};
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let query = format!("SELECT COUNT(*) AS n FROM {table} WHERE {condition}");
    let rows: Vec<Count> = match &app.database_url {
        Some(url) => diesel::sql_query(query)
            .load(&mut diesel::PgConnection::establish(url).unwrap())
            .unwrap(),
        None => {
            let path = app.dir.path().join("auth.db");
            diesel::sql_query(query)
                .load(&mut diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap())
                .unwrap()
        }
    };
    rows[0].n
}

/// Every row that refers to the account or one of its keys, by table.
fn rows_of(app: &TestApp, user: &str, keys: &[String]) -> Vec<(String, i64)> {
    let mut found = Vec::new();
    for table in [
        "sessions",
        "one_time_tokens",
        "api_keys",
        "totp_secrets",
        "recovery_codes",
        "oauth_identities",
        "oauth_login_codes",
        "passkeys",
        "passkey_challenges",
        "email_changes",
        "usage_hourly",
        "usage_daily",
    ] {
        found.push((table.to_owned(), count(app, table, "user_id", user)));
    }
    found.push(("users".to_owned(), count(app, "users", "id", user)));
    for key in keys {
        for table in ["key_networks", "usage_alerts", "usage_hourly"] {
            found.push((format!("{table} of {key}"), count(app, table, "api_key_id", key)));
        }
    }
    found.retain(|(_, n)| *n > 0);
    found
}

async fn deleting_erases_the_account_and_frees_the_address(app: TestApp) {
    app.verified_user(ADA).await;
    let pair = app.tokens(ADA).await;
    let access = pair["access_token"].as_str().unwrap();
    let user = claims(access)["sub"].as_str().unwrap().to_owned();
    let created = app.new_key(access, "ci", &["agents:read"]).await;
    let key = created["key"].as_str().unwrap();
    let key_id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(app.get_auth("/v1/authz?scope=agents:read", key).await.status(), 200);
    let response = app.post_auth("/v1/me/email", access, json!({"email": NEW})).await;
    assert_eq!(response.status(), 202);

    // An account with a password needs it; a wrong one changes nothing.
    let body = problem(delete_me(&app, access, None).await, 422, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "password");
    problem(
        delete_me(&app, access, Some(json!({"password": "not my password"}))).await,
        401,
        "invalid_credentials",
    )
    .await;
    assert_eq!(me(&app, access).await.status(), 200);
    problem(
        delete_me(&app, key, Some(json!({"password": PASSWORD}))).await,
        403,
        "user_token_required",
    )
    .await;

    let response = delete_me(&app, access, Some(json!({"password": PASSWORD}))).await;
    assert_eq!(response.status(), 204);

    // Every credential is refused at once.
    assert_eq!(me(&app, access).await.status(), 401);
    assert_eq!(app.get_auth("/v1/authz?scope=agents:read", access).await.status(), 401);
    assert_eq!(app.get_auth("/v1/authz?scope=agents:read", key).await.status(), 401);
    let refreshed = app
        .post("/v1/auth/refresh", json!({"refresh_token": pair["refresh_token"]}))
        .await;
    assert_eq!(refreshed.status(), 401);
    problem(app.login(ADA, PASSWORD).await, 401, "invalid_credentials").await;
    let goodbye = wait_for_mail_to(&app, ADA, "account was deleted").await;
    assert!(goodbye.contains("http://auth.test/signup"));

    // Nothing is left but the security log, which names no one.
    tokio::time::sleep(Duration::from_millis(2500)).await; // a usage flush
    assert_eq!(rows_of(&app, &user, &[key_id]), Vec::<(String, i64)>::new());
    let kept = count(&app, "security_events", "user_id", &user);
    assert!(kept >= 4, "signup, verification, logins, the deletion: {kept}");
    let personal = format!(
        "user_id = '{user}' AND (ip IS NOT NULL OR user_agent IS NOT NULL \
         OR (details <> '[]' AND kind <> 'account_deleted'))"
    );
    assert_eq!(count_where(&app, "security_events", &personal), 0);
    let deleted = format!("user_id = '{user}' AND kind = 'account_deleted'");
    assert_eq!(count_where(&app, "security_events", &deleted), 1);

    // The address can sign up again: a new account.
    let again = app.verified_user(ADA).await;
    assert_ne!(again["user"]["id"].as_str().unwrap(), user);
    assert_eq!(app.login(ADA, PASSWORD).await.status(), 200);
}

async fn deleting_under_parallel_requests_leaves_nothing_behind(app: TestApp) {
    app.verified_user(ADA).await;
    let pair = app.tokens(ADA).await;
    let access = pair["access_token"].as_str().unwrap().to_owned();
    let user = claims(&access)["sub"].as_str().unwrap().to_owned();
    let mut keys = Vec::new();
    let mut key_ids = Vec::new();
    for name in ["a", "b"] {
        let created: Value = app
            .post_auth(
                "/v1/api-keys",
                &access,
                json!({"name": name, "scopes": ["agents:read"]}),
            )
            .await
            .json()
            .await
            .unwrap();
        keys.push(created["key"].as_str().unwrap().to_owned());
        key_ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let app = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for round in 0..6 {
        let app = app.clone();
        let (access, key) = (access.clone(), keys[round % 2].clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                app.login(ADA, PASSWORD).await;
                app.get_auth("/v1/authz?scope=agents:read", &key).await;
                app.get_auth("/v1/authz?scope=chat:read", &key).await;
                app.post_auth(
                    "/v1/api-keys",
                    &access,
                    json!({"name": "late", "scopes": ["chat:read"]}),
                )
                .await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let deletions: Vec<_> = (0..2)
        .map(|_| {
            let (app, access) = (app.clone(), access.clone());
            tokio::spawn(async move {
                delete_me(&app, &access, Some(json!({"password": PASSWORD})))
                    .await
                    .status()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for deletion in deletions {
        statuses.push(deletion.await.unwrap().as_u16());
    }
    for task in tasks {
        task.await.unwrap();
    }
    // One deletion did it; the other found the session gone (or did it too).
    assert!(statuses.contains(&204), "{statuses:?}");
    assert!(statuses.iter().all(|s| [204, 401].contains(s)), "{statuses:?}");
    // Logins raced with the deletion: any that came after it are refused,
    // and none left a session of a gone account behind.
    problem(app.login(ADA, PASSWORD).await, 401, "invalid_credentials").await;
    tokio::time::sleep(Duration::from_millis(2500)).await; // a usage flush
    assert_eq!(rows_of(&app, &user, &key_ids), Vec::<(String, i64)>::new());
    for key in &keys {
        assert_eq!(app.get_auth("/v1/authz?scope=agents:read", key).await.status(), 401);
    }
}

async fn the_account_page_changes_the_address_exports_and_deletes(app: TestApp) {
    app.verified_user(ADA).await;
    let mut browser = Browser::new(&app);
    browser.log_in(ADA).await;
    let page = browser.get("/settings/account").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(ADA));
    assert!(page.body.contains("href=\"/settings/account/export\""));
    let csrf = page.csrf();

    // A mistyped address is said on the form.
    let page = browser
        .post("/settings/account/email", &[("csrf", &csrf), ("email", "ada@")])
        .await;
    assert_eq!(page.status, 422);
    assert!(page.body.contains("aria-invalid=\"true\""), "{}", page.body);

    let page = browser
        .post("/settings/account/email", &[("csrf", &csrf), ("email", NEW)])
        .await;
    assert_eq!(page.status, 303);
    assert_eq!(page.header("location"), "/settings/account?notice=email_change_sent");
    let page = browser.get("/settings/account?notice=email_change_sent").await;
    assert!(
        page.body.contains(&format!("data-pending-email=\"{NEW}\"")),
        "{}",
        page.body
    );

    // The link opens a page whose button confirms; fetching it changes nothing.
    let link = wait_for_mail_to(&app, NEW, "Confirm your new email address").await;
    let token = link_token(&link, "/confirm-email").unwrap();
    let confirm = browser.get(&format!("/confirm-email?token={token}")).await;
    assert_eq!(confirm.status, 200);
    assert!(browser
        .get("/settings/account")
        .await
        .body
        .contains(&format!("You sign in with <strong>{ADA}")));
    let page = browser
        .post("/confirm-email", &[("csrf", &confirm.csrf()), ("token", &token)])
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    let page = browser.get("/settings/account?notice=email_changed").await;
    assert_eq!(page.status, 200, "the browser that asked stays signed in");
    assert!(
        page.body.contains(&format!("You sign in with <strong>{NEW}")),
        "{}",
        page.body
    );
    let again = browser
        .post("/confirm-email", &[("csrf", &confirm.csrf()), ("token", &token)])
        .await;
    assert_eq!(again.status, 400);

    let download = browser.get("/settings/account/export").await;
    assert_eq!(download.status, 200);
    let export: Value = serde_json::from_str(&download.body).unwrap();
    assert_eq!(export["user"]["email"], NEW);

    // Deleting asks for the password and the word.
    let csrf = page.csrf();
    let page = browser
        .post(
            "/settings/account/delete",
            &[("csrf", &csrf), ("password", PASSWORD), ("confirm", "yes")],
        )
        .await;
    assert_eq!(page.status, 422);
    let page = browser
        .post(
            "/settings/account/delete",
            &[("csrf", &csrf), ("password", "wrong"), ("confirm", "DELETE")],
        )
        .await;
    assert_eq!(page.status, 401);
    let page = browser
        .post(
            "/settings/account/delete",
            &[("csrf", &csrf), ("password", PASSWORD), ("confirm", "DELETE")],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.header("location"), "/login?notice=account_deleted");
    let after = browser.get("/dashboard").await;
    assert_eq!(after.status, 303, "signed out");
    problem(app.login(NEW, PASSWORD).await, 401, "invalid_credentials").await;
}

#[tokio::test]
async fn support_deletes_an_account_from_the_command_line() {
    let app = TestApp::spawn().await;
    let access = app.signed_in(ADA).await;
    let output = app.cli(&["user", "delete", ADA]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains(ADA) && said.contains("deleted"), "{said}");
    assert_eq!(me(&app, &access).await.status(), 401);
    problem(app.login(ADA, PASSWORD).await, 401, "invalid_credentials").await;
    let again = app.cli(&["user", "delete", ADA]);
    assert!(!again.status.success());
    let error = String::from_utf8_lossy(&again.stderr);
    assert_eq!(error.lines().count(), 1, "{error}");
}

#[tokio::test]
async fn an_account_without_a_password_is_deleted_after_a_recent_sign_in() {
    let app = TestApp::with(&[("AUTH_REAUTH_WINDOW", "2s")]).await;
    let ada = app.signed_in(ADA).await;
    let bob = app.signed_in(BOB).await;
    // Provider-only accounts: no password, as after an OAuth signup. A
    // second instance reads them afresh (the first one remembers them).
    {
        use diesel::{Connection, RunQueryDsl};
        let path = app.dir.path().join("auth.db");
        let mut conn = diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        diesel::sql_query("UPDATE users SET password_hash = NULL")
            .execute(&mut conn)
            .unwrap();
    }
    let replica = app.replica(&[("AUTH_REAUTH_WINDOW", "2s")]).await;
    // Within the window: no password asked.
    assert_eq!(delete_me(&replica, &ada, None).await.status(), 204);
    assert_eq!(me(&replica, &ada).await.status(), 401);
    // Past it: re-authenticate first, and nothing was deleted.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    problem(delete_me(&replica, &bob, None).await, 403, "reauthentication_required").await;
    let user = claims(&bob)["sub"].as_str().unwrap().to_owned();
    assert_eq!(count(&app, "users", "id", &user), 1);
    drop(replica);
}
