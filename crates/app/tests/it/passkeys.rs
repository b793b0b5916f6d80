//! Passkeys through the API, against the software authenticator: add,
//! sign in, re-authenticate, remove, and every refusal.

use super::harness::*;
use convosphere_passkey::testing::SoftAuthenticator;
use reqwest::Response;
use serde_json::{json, Value};

/// The origin the harness serves (`AUTH_PUBLIC_URL`).
const ORIGIN: &str = "http://auth.test";

on_both_backends!(
    a_passkey_is_added_signs_in_without_a_password_and_is_listed(&[]),
    challenges_work_once_and_answers_are_checked(&[]),
    adding_and_removing_need_a_recent_sign_in_and_a_passkey_reauthenticates(&[("AUTH_REAUTH_WINDOW", "2s")]),
);

async fn body(response: Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status);
    response.json().await.unwrap()
}

/// Adds a passkey named `name` to the account of `access`.
async fn add(app: &TestApp, access: &str, authenticator: &mut SoftAuthenticator, name: &str) -> Value {
    let started = body(
        app.post_auth("/v1/me/passkeys/register/start", access, json!({})).await,
        200,
    )
    .await;
    let credential = authenticator.register(&started["options"].to_string()).unwrap();
    let finish = json!({
        "challenge_id": started["challenge_id"],
        "name": name,
        "credential": serde_json::from_str::<Value>(&credential).unwrap(),
    });
    body(
        app.post_auth("/v1/me/passkeys/register/finish", access, finish).await,
        201,
    )
    .await
}

/// A started sign-in and the authenticator's answer to it.
async fn assertion(app: &TestApp, authenticator: &mut SoftAuthenticator) -> Value {
    let started = body(app.post("/v1/auth/passkey/start", json!({})).await, 200).await;
    let answer = authenticator.sign_in(&started["options"].to_string()).unwrap();
    json!({"challenge_id": started["challenge_id"], "credential": serde_json::from_str::<Value>(&answer).unwrap()})
}

async fn delete(app: &TestApp, path: &str, access: &str) -> Response {
    app.client
        .delete(app.url(path))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
}

async fn a_passkey_is_added_signs_in_without_a_password_and_is_listed(app: TestApp) {
    let access = app.signed_in("ada@example.com").await;
    let mut authenticator = SoftAuthenticator::new(ORIGIN);

    let started = body(
        app.post_auth("/v1/me/passkeys/register/start", &access, json!({}))
            .await,
        200,
    )
    .await;
    let options = &started["options"];
    assert_eq!(options["rp"]["id"], "auth.test");
    assert_eq!(options["user"]["name"], "ada@example.com");
    assert_eq!(options["authenticatorSelection"]["residentKey"], "required");
    assert_eq!(options["authenticatorSelection"]["userVerification"], "required");

    let laptop = add(&app, &access, &mut authenticator, "Laptop").await;
    assert_eq!(laptop["name"], "Laptop");
    assert_eq!(laptop["backed_up"], false);
    assert_eq!(laptop["last_used_at"], Value::Null);

    // The same authenticator is excluded the next time.
    let again = body(
        app.post_auth("/v1/me/passkeys/register/start", &access, json!({}))
            .await,
        200,
    )
    .await;
    let excluded = again["options"]["excludeCredentials"].as_array().unwrap();
    assert_eq!(excluded.len(), 1);
    assert!(authenticator.register(&again["options"].to_string()).is_err());

    // Sign in: no e-mail, no password; a session with amr hwk.
    let signed_in = assertion(&app, &mut authenticator).await;
    let tokens = body(app.post("/v1/auth/passkey/finish", signed_in).await, 200).await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(tokens["user"]["email"], "ada@example.com");
    assert_eq!(claims(access)["amr"], json!(["hwk"]));
    assert_eq!(
        body(app.get_auth("/v1/me", access).await, 200).await["user"]["email"],
        "ada@example.com"
    );
    let refreshed = app
        .post("/v1/auth/refresh", json!({"refresh_token": tokens["refresh_token"]}))
        .await;
    assert_eq!(refreshed.status(), 200);

    let listed = body(app.get_auth("/v1/me/passkeys", access).await, 200).await;
    let passkeys = listed["passkeys"].as_array().unwrap();
    assert_eq!(passkeys.len(), 1);
    assert_eq!(passkeys[0]["id"], laptop["id"]);
    assert!(passkeys[0]["last_used_at"].is_string(), "{listed}");
    let sessions = body(app.get_auth("/v1/sessions", access).await, 200).await;
    assert_eq!(
        sessions["sessions"].as_array().unwrap().len(),
        2,
        "the sign-in is a session like any"
    );

    let events = body(app.get_auth("/v1/me/events", access).await, 200).await;
    let kinds = event_types(&events);
    assert!(kinds.contains(&"passkey_added"), "{kinds:?}");
    let login = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "login_succeeded")
        .unwrap();
    assert_eq!(login["details"]["method"], "passkey");

    // The export lists it, without its public key.
    let export = body(app.get_auth("/v1/me/export", access).await, 200).await;
    assert_eq!(export["passkeys"][0]["name"], "Laptop");
    assert!(export["passkeys"][0].get("credential").is_none());

    // Another account's token cannot see or remove it.
    let bob = app.signed_in("bob@example.com").await;
    let listed = body(app.get_auth("/v1/me/passkeys", &bob).await, 200).await;
    assert_eq!(listed["passkeys"], json!([]));
    let path = format!("/v1/me/passkeys/{}", laptop["id"].as_str().unwrap());
    problem(delete(&app, &path, &bob).await, 404, "not_found").await;
}

async fn challenges_work_once_and_answers_are_checked(app: TestApp) {
    let access = app.signed_in("ada@example.com").await;
    let mut authenticator = SoftAuthenticator::new(ORIGIN);
    add(&app, &access, &mut authenticator, "Laptop").await;

    // A used challenge.
    let signed_in = assertion(&app, &mut authenticator).await;
    body(app.post("/v1/auth/passkey/finish", signed_in.clone()).await, 200).await;
    problem(
        app.post("/v1/auth/passkey/finish", signed_in).await,
        401,
        "passkey_failed",
    )
    .await;

    // An unknown challenge, and a registration's challenge used to sign in.
    let mut forged = assertion(&app, &mut authenticator).await;
    forged["challenge_id"] = json!("not-a-challenge");
    problem(app.post("/v1/auth/passkey/finish", forged).await, 401, "passkey_failed").await;

    // An answer from a page of another origin.
    let mut phished = SoftAuthenticator::new(ORIGIN);
    add(&app, &access, &mut phished, "Phone").await;
    phished.set_origin("http://auth.test.evil.example");
    let started = body(app.post("/v1/auth/passkey/start", json!({})).await, 200).await;
    let options = started["options"].to_string();
    let answer = |authenticator: &mut SoftAuthenticator| {
        let credential: Value = serde_json::from_str(&authenticator.sign_in(&options).unwrap()).unwrap();
        json!({"challenge_id": started["challenge_id"], "credential": credential})
    };
    // The refused answer uses its challenge up: a right answer to it comes too late.
    for signer in [&mut phished, &mut authenticator] {
        let refused = answer(signer);
        problem(
            app.post("/v1/auth/passkey/finish", refused).await,
            401,
            "passkey_failed",
        )
        .await;
    }

    // A counter going back (a cloned authenticator).
    authenticator.set_counter(0, 0);
    let cloned = assertion(&app, &mut authenticator).await;
    problem(app.post("/v1/auth/passkey/finish", cloned).await, 401, "passkey_failed").await;

    // A credential this service never registered.
    let mut stranger = SoftAuthenticator::new(ORIGIN);
    let started = body(
        app.post_auth("/v1/me/passkeys/register/start", &access, json!({}))
            .await,
        200,
    )
    .await;
    stranger.register(&started["options"].to_string()).unwrap();
    let unknown = assertion(&app, &mut stranger).await;
    problem(
        app.post("/v1/auth/passkey/finish", unknown).await,
        401,
        "passkey_failed",
    )
    .await;

    // Bad bodies change nothing and keep the challenge.
    let mut tablet = SoftAuthenticator::new(ORIGIN);
    let started = body(
        app.post_auth("/v1/me/passkeys/register/start", &access, json!({}))
            .await,
        200,
    )
    .await;
    let credential: Value = serde_json::from_str(&tablet.register(&started["options"].to_string()).unwrap()).unwrap();
    let nameless = json!({"challenge_id": started["challenge_id"], "name": " ", "credential": credential});
    let finish = app
        .post_auth("/v1/me/passkeys/register/finish", &access, nameless)
        .await;
    let refused = problem(finish, 422, "validation_failed").await;
    assert_eq!(refused["errors"][0]["field"], "name");
    let incomplete = app.post("/v1/auth/passkey/finish", json!({"challenge_id": "x"})).await;
    problem(incomplete, 422, "validation_failed").await;
    let named = json!({"challenge_id": started["challenge_id"], "name": "Tablet", "credential": credential});
    body(
        app.post_auth("/v1/me/passkeys/register/finish", &access, named).await,
        201,
    )
    .await;

    // A suspended account is refused as for a password.
    let out = app.cli(&["user", "lock", "ada@example.com"]);
    assert!(out.status.success(), "{out:?}");
    let locked = assertion(&app, &mut tablet).await;
    problem(app.post("/v1/auth/passkey/finish", locked).await, 403, "account_locked").await;
}

async fn adding_and_removing_need_a_recent_sign_in_and_a_passkey_reauthenticates(app: TestApp) {
    let access = app.signed_in("ada@example.com").await;
    let mut authenticator = SoftAuthenticator::new(ORIGIN);
    let laptop = add(&app, &access, &mut authenticator, "Laptop").await;
    let started = body(
        app.post_auth("/v1/me/passkeys/register/start", &access, json!({}))
            .await,
        200,
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;

    // Too late: the started registration cannot be finished, nor a new one begun.
    let credential: Value = serde_json::from_str(
        &SoftAuthenticator::new(ORIGIN)
            .register(&started["options"].to_string())
            .unwrap(),
    )
    .unwrap();
    let finish = json!({"challenge_id": started["challenge_id"], "name": "Phone", "credential": credential});
    problem(
        app.post_auth("/v1/me/passkeys/register/finish", &access, finish).await,
        403,
        "reauthentication_required",
    )
    .await;
    problem(
        app.post_auth("/v1/me/passkeys/register/start", &access, json!({}))
            .await,
        403,
        "reauthentication_required",
    )
    .await;
    let path = format!("/v1/me/passkeys/{}", laptop["id"].as_str().unwrap());
    problem(delete(&app, &path, &access).await, 403, "reauthentication_required").await;

    // A passkey re-authenticates the session: same session, auth_time now, amr hwk.
    let before = claims(&access);
    let reauth = assertion(&app, &mut authenticator).await;
    let renewed = body(app.post_auth("/v1/auth/reauthenticate", &access, reauth).await, 200).await;
    let renewed = renewed["access_token"].as_str().unwrap().to_owned();
    let after = claims(&renewed);
    assert_eq!(after["sid"], before["sid"]);
    assert!(after["auth_time"].as_i64() > before["auth_time"].as_i64());
    assert_eq!(after["amr"], json!(["hwk"]));

    // Another account's passkey does not re-authenticate this session.
    let bob = app.signed_in("bob@example.com").await;
    let theirs = assertion(&app, &mut authenticator).await;
    problem(
        app.post_auth("/v1/auth/reauthenticate", &bob, theirs).await,
        401,
        "passkey_failed",
    )
    .await;

    problem(
        delete(&app, "/v1/me/passkeys/not-an-id", &renewed).await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(
        delete(&app, &path, &renewed).await.status(),
        204,
        "a password remains: it may go"
    );
    let listed = body(app.get_auth("/v1/me/passkeys", &renewed).await, 200).await;
    assert_eq!(listed["passkeys"], json!([]));
    let gone = assertion(&app, &mut authenticator).await;
    problem(app.post("/v1/auth/passkey/finish", gone).await, 401, "passkey_failed").await;
}

/// Two replicas behind a load balancer: a ceremony started on one is
/// finished on the other, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_started_on_one_instance_is_finished_on_the_other() {
    let Some(a) = TestApp::postgres(&[]).await else { return };
    let b = a.replica(&[]).await;
    let access = a.signed_in("ada@example.com").await;
    let mut authenticator = SoftAuthenticator::new(ORIGIN);

    let started = body(
        a.post_auth("/v1/me/passkeys/register/start", &access, json!({})).await,
        200,
    )
    .await;
    let credential: Value =
        serde_json::from_str(&authenticator.register(&started["options"].to_string()).unwrap()).unwrap();
    let finish = json!({"challenge_id": started["challenge_id"], "name": "Laptop", "credential": credential});
    body(
        b.post_auth("/v1/me/passkeys/register/finish", &access, finish).await,
        201,
    )
    .await;

    let started = body(b.post("/v1/auth/passkey/start", json!({})).await, 200).await;
    let answer: Value = serde_json::from_str(&authenticator.sign_in(&started["options"].to_string()).unwrap()).unwrap();
    let finish = json!({"challenge_id": started["challenge_id"], "credential": answer});
    body(a.post("/v1/auth/passkey/finish", finish.clone()).await, 200).await;
    problem(b.post("/v1/auth/passkey/finish", finish).await, 401, "passkey_failed").await;
    drop(b);
}

/// The pages: add a passkey on `/settings/security` (the script's requests,
/// made here by hand), then sign in with it on `/login` in another browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_add_a_passkey_and_sign_in_with_it() {
    use super::web::Browser;
    let app = TestApp::spawn().await;
    app.verified_user("ada@example.com").await;
    let mut browser = Browser::new(&app);
    browser.log_in("ada@example.com").await;
    let security = browser.get("/settings/security").await;
    assert!(security.body.contains("Add a passkey"), "{}", security.body);
    assert!(security.body.contains("No passkey yet."));
    let csrf = security.csrf();

    // Without the script's answer: nothing is added.
    let plain = browser
        .post("/settings/security/passkeys", &[("csrf", &csrf), ("name", "Laptop")])
        .await;
    assert_eq!(plain.header("location"), "/settings/security?notice=passkey_script");

    let mut authenticator = SoftAuthenticator::new(ORIGIN);
    let started = browser
        .post("/settings/security/passkeys/start", &[("csrf", &csrf)])
        .await;
    assert_eq!(started.status, 200, "{}", started.body);
    assert_eq!(started.header("cache-control"), "no-store");
    let started: Value = serde_json::from_str(&started.body).unwrap();
    let credential = authenticator.register(&started["options"].to_string()).unwrap();
    let challenge_id = started["challenge_id"].as_str().unwrap();
    let fields = [
        ("csrf", csrf.as_str()),
        ("name", "Laptop"),
        ("challenge_id", challenge_id),
        ("credential", &credential),
    ];
    let added = browser.post("/settings/security/passkeys", &fields).await;
    assert_eq!(added.header("location"), "/settings/security?notice=passkey_added");
    let security = browser.get("/settings/security?notice=passkey_added").await;
    assert!(security.body.contains("The passkey was added."));
    assert!(security.body.contains(">Laptop<"), "{}", security.body);
    let again = browser.post("/settings/security/passkeys", &fields).await;
    assert_eq!(
        again.header("location"),
        "/settings/security?notice=passkey_failed",
        "a challenge works once"
    );

    let mut visitor = Browser::new(&app);
    let login = visitor.get("/login").await;
    assert!(login.body.contains("Sign in with a passkey"));
    assert!(login.body.contains("autocomplete=\"username webauthn\""));
    let csrf = login.csrf();
    let started = visitor.post("/login/passkey/start", &[("csrf", &csrf)]).await;
    let started: Value = serde_json::from_str(&started.body).unwrap();
    let answer = authenticator.sign_in(&started["options"].to_string()).unwrap();
    let challenge_id = started["challenge_id"].as_str().unwrap();
    let fields = [
        ("csrf", csrf.as_str()),
        ("next", "/dashboard"),
        ("challenge_id", challenge_id),
        ("credential", &answer),
    ];
    let signed_in = visitor.post("/login/passkey", &fields).await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    assert_eq!(signed_in.header("location"), "/dashboard");
    let dashboard = visitor.get("/dashboard").await;
    assert_eq!(dashboard.status, 200);
    assert!(dashboard.body.contains("ada@example.com"));
    let replayed = visitor.post("/login/passkey", &fields).await;
    assert_eq!(replayed.status, 401);
    assert!(
        replayed.body.contains("That passkey could not be used here."),
        "{}",
        replayed.body
    );

    // Removing it from the page.
    let security = browser.get("/settings/security").await;
    let start = security.body.find("/settings/security/passkeys/").unwrap();
    let action = security.body[start..].split('"').next().unwrap().to_owned();
    assert!(action.ends_with("/remove"), "{action}");
    let removed = browser.post(&action, &[("csrf", &security.csrf())]).await;
    assert_eq!(removed.header("location"), "/settings/security?notice=passkey_removed");
    assert!(browser.get("/settings/security").await.body.contains("No passkey yet."));
}
