//! OAuth login end to end: the service, a real OpenID Provider for Google
//! (`oidc-provider`, see crates/oauth/tests/oidc/), and a local server that
//! answers like GitHub's and Facebook's endpoints. A `Browser` keeps the
//! cookies of the service and of the provider, as a person's browser would.

use super::harness::*;
use super::mfa::{code as totp_at, enable_totp};
use super::web::hidden;
use convosphere_oauth::testing::{
    Account, Browser, FakeGithubFacebook, Person, TestOidcProvider, CLIENT_ID, CLIENT_SECRET,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Where the providers send the browser back (the service's public URL is `http://auth.test`).
const PUBLIC: &str = "http://auth.test";
const ALLOWED: &str = "https://app.example.com/done";

macro_rules! with_providers {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    if let Some(world) = super::World::start(false).await {
                        super::$name(world).await;
                    }
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(world) = super::World::start(true).await {
                        super::$name(world).await;
                    }
                }
            }
        )+
    };
}

with_providers!(
    a_google_login_makes_a_verified_account_and_the_code_gives_one_session,
    an_address_given_only_at_userinfo_is_enough,
    an_unverified_address_is_refused_and_nothing_is_made,
    an_id_token_with_another_nonce_is_refused,
    a_state_works_once,
    a_state_works_only_in_the_browser_that_started_it,
    redirect_targets_are_checked_at_start_and_kept_to_the_callback,
    unknown_and_unconfigured_providers_are_not_found,
    an_existing_account_is_joined_and_a_suspended_one_refused,
    parallel_exchanges_of_one_code_give_one_session,
    github_logins_need_a_verified_primary_address,
    github_refusals_and_failures_are_oauth_failed,
    facebook_logins_use_the_graph_api_address,
    an_account_with_2fa_needs_its_code_after_a_provider_login,
    a_browser_signs_in_with_a_provider_and_then_its_code,
    linked_identities_are_listed_and_the_last_way_in_is_kept,
    a_signed_in_person_links_another_provider_from_the_security_page,
);

struct World {
    app: TestApp,
    idp: TestOidcProvider,
    fake: FakeGithubFacebook,
}

impl World {
    async fn start(postgres: bool) -> Option<Self> {
        let idp = TestOidcProvider::start(&[&format!("{PUBLIC}/v1/auth/oauth/google/callback")])?;
        let fake = FakeGithubFacebook::start(people()).await;
        let settings: Vec<(String, String)> = vec![
            ("AUTH_OAUTH_GOOGLE_CLIENT_ID".into(), CLIENT_ID.into()),
            ("AUTH_OAUTH_GOOGLE_CLIENT_SECRET".into(), CLIENT_SECRET.into()),
            ("AUTH_OAUTH_GOOGLE_ISSUER".into(), idp.issuer.clone()),
            ("AUTH_OAUTH_GITHUB_CLIENT_ID".into(), "gh-client".into()),
            ("AUTH_OAUTH_GITHUB_CLIENT_SECRET".into(), "gh-secret".into()),
            (
                "AUTH_OAUTH_GITHUB_AUTH_URL".into(),
                format!("{}/login/oauth/authorize", fake.base),
            ),
            (
                "AUTH_OAUTH_GITHUB_TOKEN_URL".into(),
                format!("{}/login/oauth/access_token", fake.base),
            ),
            ("AUTH_OAUTH_GITHUB_API_URL".into(), format!("{}/api", fake.base)),
            ("AUTH_OAUTH_FACEBOOK_CLIENT_ID".into(), "fb-client".into()),
            ("AUTH_OAUTH_FACEBOOK_CLIENT_SECRET".into(), "fb-secret".into()),
            (
                "AUTH_OAUTH_FACEBOOK_AUTH_URL".into(),
                format!("{}/dialog/oauth", fake.base),
            ),
            (
                "AUTH_OAUTH_FACEBOOK_TOKEN_URL".into(),
                format!("{}/oauth/access_token", fake.base),
            ),
            ("AUTH_OAUTH_FACEBOOK_API_URL".into(), format!("{}/graph", fake.base)),
            ("AUTH_OAUTH_REDIRECT_ALLOWLIST".into(), ALLOWED.into()),
        ];
        let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let app = if postgres {
            TestApp::postgres(&settings).await?
        } else {
            TestApp::with(&settings).await
        };
        Some(Self { app, idp, fake })
    }

    /// `GET /v1/auth/oauth/{provider}/start` in `browser`.
    async fn start_login(&self, browser: &Browser, provider: &str, redirect_to: Option<&str>) -> reqwest::Response {
        let mut url = self.app.url(&format!("/v1/auth/oauth/{provider}/start"));
        if let Some(to) = redirect_to {
            url.push_str(&format!("?redirect_to={}", encode(to)));
        }
        browser.client.get(url).send().await.unwrap()
    }

    /// Starts a login, logs in at the provider as `who` (a Google login hint,
    /// or the fake's `login`), and answers the callback URL the provider
    /// sends the browser to, rewritten to reach the service.
    async fn to_callback(&self, browser: &Browser, provider: &str, redirect_to: Option<&str>, who: &str) -> String {
        let started = self.start_login(browser, provider, redirect_to).await;
        assert_eq!(started.status(), StatusCode::FOUND, "{:?}", started.text().await);
        let to_provider = location(&started);
        let param = if provider == "google" { "login_hint" } else { "login" };
        let url = format!("{to_provider}&{param}={}", encode(who));
        let back = browser.follow_until(&url, |u| u.starts_with(PUBLIC)).await;
        assert!(
            back.starts_with(&format!("{PUBLIC}/v1/auth/oauth/{provider}/callback?")),
            "{back}"
        );
        back.replacen(PUBLIC, &self.app.base, 1)
    }

    /// The whole browser part: the callback's answer.
    async fn login(
        &self,
        browser: &Browser,
        provider: &str,
        redirect_to: Option<&str>,
        who: &str,
    ) -> reqwest::Response {
        let callback = self.to_callback(browser, provider, redirect_to, who).await;
        browser.client.get(callback).send().await.unwrap()
    }

    async fn exchange(&self, code: &str) -> reqwest::Response {
        self.app.post("/v1/auth/oauth/exchange", json!({ "code": code })).await
    }

    /// Logs in with Google as `account` and exchanges the code: the token pair.
    async fn google_tokens(&self, account: &Account) -> Value {
        let callback = self
            .login(&Browser::new(), "google", Some(ALLOWED), &account.login_hint())
            .await;
        assert_eq!(callback.status(), StatusCode::FOUND, "{:?}", callback.text().await);
        let code = query(&location(&callback), "code").unwrap();
        let exchanged = self.exchange(&code).await;
        assert_eq!(exchanged.status(), StatusCode::OK);
        exchanged.json().await.unwrap()
    }

    /// Runs one SQL statement on the service's database; answers the rows changed.
    fn sql(&self, statement: &str) -> usize {
        use diesel::{Connection, RunQueryDsl};
        match &self.app.database_url {
            Some(url) => diesel::sql_query(statement)
                .execute(&mut diesel::PgConnection::establish(url).unwrap())
                .unwrap(),
            None => {
                let path = self.app.dir.path().join("auth.db");
                diesel::sql_query(statement)
                    .execute(&mut diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap())
                    .unwrap()
            }
        }
    }

    /// How many rows `table` holds (by touching them all).
    fn rows(&self, table: &str) -> usize {
        self.sql(&format!("UPDATE {table} SET created_at = created_at"))
    }
}

fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().unwrap().to_owned()
}

fn query(url: &str, key: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

async fn a_google_login_makes_a_verified_account_and_the_code_gives_one_session(world: World) {
    let browser = Browser::new();
    let started = world.start_login(&browser, "google", Some(ALLOWED)).await;
    assert_eq!(started.status(), StatusCode::FOUND);
    let cookie = started.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attribute in [
        "convosphere_oauth=",
        "HttpOnly",
        "SameSite=Lax",
        "Max-Age=600",
        "Path=/v1/auth/oauth/",
    ] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "the public URL is http");
    let to_provider = location(&started);
    assert!(
        to_provider.starts_with(&format!("{}/auth?", world.idp.issuer)),
        "{to_provider}"
    );
    assert_eq!(query(&to_provider, "code_challenge_method").as_deref(), Some("S256"));
    assert!(query(&to_provider, "nonce").is_some() && query(&to_provider, "state").is_some());
    assert_eq!(
        query(&to_provider, "redirect_uri").as_deref(),
        Some("http://auth.test/v1/auth/oauth/google/callback")
    );

    let account = Account::new("ada", "Ada@Example.com");
    let url = format!("{to_provider}&login_hint={}", encode(&account.login_hint()));
    let back = browser.follow_until(&url, |u| u.starts_with(PUBLIC)).await;
    let callback = browser
        .client
        .get(back.replacen(PUBLIC, &world.app.base, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(callback.status(), StatusCode::FOUND);
    assert_eq!(callback.headers()["cache-control"], "no-store");
    assert!(callback.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    let target = location(&callback);
    assert!(target.starts_with(&format!("{ALLOWED}?code=")), "{target}");
    let code = query(&target, "code").unwrap();

    let exchanged = world.exchange(&code).await;
    assert_eq!(exchanged.status(), StatusCode::OK);
    let pair: Value = exchanged.json().await.unwrap();
    assert_eq!(pair["token_type"], "Bearer");
    assert_eq!(pair["user"]["email"], "ada@example.com");
    assert_eq!(pair["user"]["email_verified"], true);
    assert_eq!(pair["user"]["plan"], "free");
    assert_eq!(pair["user"]["name"], "Ada Lovelace");
    let access = pair["access_token"].as_str().unwrap();
    let me: Value = world.app.get_auth("/v1/me", access).await.json().await.unwrap();
    assert_eq!(me["user"]["email"], "ada@example.com");
    assert_eq!(me["principal"]["session_id"], pair["session_id"]);

    // The code works once.
    problem(world.exchange(&code).await, 400, "oauth_failed").await;
    problem(world.exchange("made-up").await, 400, "oauth_failed").await;

    let events: Value = world.app.get_auth("/v1/me/events", access).await.json().await.unwrap();
    let login = &events["events"][0];
    assert_eq!(login["type"], "login_succeeded");
    assert_eq!(login["details"]["method"], "oauth:google");
    assert_eq!(events["events"][1]["type"], "signup");
    // No password was set: a password login cannot work.
    problem(
        world.app.login("ada@example.com", PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;

    // The next login finds the same account by (provider, subject).
    let again = world.google_tokens(&account).await;
    assert_eq!(again["user"]["id"], pair["user"]["id"]);
    let sessions: Value = world.app.get_auth("/v1/sessions", access).await.json().await.unwrap();
    assert_eq!(sessions["sessions"].as_array().unwrap().len(), 2);
}

async fn an_address_given_only_at_userinfo_is_enough(world: World) {
    let account = Account {
        email_only_at_userinfo: true,
        ..Account::new("eve", "eve@example.com")
    };
    let pair = world.google_tokens(&account).await;
    assert_eq!(pair["user"]["email"], "eve@example.com");
    assert_eq!(pair["user"]["email_verified"], true);
}

async fn an_unverified_address_is_refused_and_nothing_is_made(world: World) {
    let account = Account {
        verified: false,
        ..Account::new("bob", "bob@example.com")
    };
    // No redirect_to named: problem JSON.
    let callback = world
        .login(&Browser::new(), "google", None, &account.login_hint())
        .await;
    let body = problem(callback, 400, "oauth_failed").await;
    assert!(body["detail"].as_str().unwrap().contains("verified e-mail"), "{body}");
    // A redirect_to named: back there with the error.
    let callback = world
        .login(&Browser::new(), "google", Some(ALLOWED), &account.login_hint())
        .await;
    assert_eq!(callback.status(), StatusCode::FOUND);
    assert_eq!(location(&callback), format!("{ALLOWED}?error=oauth_failed"));
    let nobody = Account {
        email: None,
        ..Account::new("nil", "")
    };
    let callback = world.login(&Browser::new(), "google", None, &nobody.login_hint()).await;
    problem(callback, 400, "oauth_failed").await;
    assert_eq!(world.rows("users"), 0);
    assert_eq!(world.rows("oauth_identities"), 0);
    assert_eq!(world.rows("oauth_login_codes"), 0);
}

async fn an_id_token_with_another_nonce_is_refused(world: World) {
    let browser = Browser::new();
    let account = Account::new("ada", "ada@example.com");
    let callback = world.to_callback(&browser, "google", None, &account.login_hint()).await;
    // The provider put the request's nonce in the ID token; the stored one
    // no longer matches it.
    assert_eq!(world.sql("UPDATE oauth_pending_logins SET nonce = 'tampered'"), 1);
    let body = problem(browser.client.get(callback).send().await.unwrap(), 400, "oauth_failed").await;
    assert!(
        body["detail"].as_str().unwrap().to_lowercase().contains("nonce"),
        "{body}"
    );
    assert_eq!(world.rows("users"), 0);
}

async fn a_state_works_once(world: World) {
    let browser = Browser::new();
    let account = Account::new("ada", "ada@example.com");
    let callback = world.to_callback(&browser, "google", None, &account.login_hint()).await;
    let first = browser.client.get(&callback).send().await.unwrap();
    // No redirect_to: the browser is signed in to the web pages and sent to the dashboard.
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&first), "/dashboard");
    let cookies: Vec<&str> = first
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("convosphere_session=") && c.contains("HttpOnly")),
        "{cookies:?}"
    );
    let dashboard = browser.client.get(world.app.url("/dashboard")).send().await.unwrap();
    assert_eq!(dashboard.status(), StatusCode::OK);
    assert!(dashboard.text().await.unwrap().contains("ada@example.com"));
    // Replayed (the browser's cookie is gone; put it back to be sure it is the state that fails).
    let replay = browser.client.get(&callback).send().await.unwrap();
    let body = problem(replay, 400, "oauth_failed").await;
    assert!(body["detail"].as_str().unwrap().contains("state"), "{body}");
    problem(
        browser
            .client
            .get(world.app.url("/v1/auth/oauth/google/callback?code=x"))
            .send()
            .await
            .unwrap(),
        400,
        "oauth_failed",
    )
    .await;
}

async fn a_state_works_only_in_the_browser_that_started_it(world: World) {
    let account = Account::new("ada", "ada@example.com");
    let victim = Browser::new();
    let callback = world
        .to_callback(&victim, "google", Some(ALLOWED), &account.login_hint())
        .await;
    // Another browser without the cookie…
    let stranger = Browser::new();
    let body = problem(
        stranger.client.get(&callback).send().await.unwrap(),
        400,
        "oauth_failed",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("another browser"), "{body}");
    // …spent the state: the right browser cannot finish either.
    problem(victim.client.get(&callback).send().await.unwrap(), 400, "oauth_failed").await;

    // A browser with a cookie of its own login.
    let callback = world.to_callback(&victim, "google", None, &account.login_hint()).await;
    let other = Browser::new();
    assert_eq!(
        world.start_login(&other, "google", None).await.status(),
        StatusCode::FOUND
    );
    problem(other.client.get(&callback).send().await.unwrap(), 400, "oauth_failed").await;
    assert_eq!(world.rows("users"), 0);
}

async fn redirect_targets_are_checked_at_start_and_kept_to_the_callback(world: World) {
    let browser = Browser::new();
    for evil in [
        "https://evil.example/",
        "https://app.example.com.evil.example/done",
        "https://app.example.com@evil.example/done",
        "https://app.example.com/donel",
        "http://app.example.com/done",
        "//evil.example/done",
        "/\\evil.example",
        "javascript:alert(1)",
    ] {
        let started = world.start_login(&browser, "google", Some(evil)).await;
        problem(started, 400, "invalid_request").await;
    }
    let started = world
        .start_login(&browser, "google", Some("/settings/sessions?tab=1"))
        .await;
    assert_eq!(started.status(), StatusCode::FOUND);

    // A redirect_to slipped into the callback is ignored: the one checked at start wins.
    let account = Account::new("ada", "ada@example.com");
    let callback = world
        .to_callback(
            &browser,
            "google",
            Some("https://app.example.com/done/x"),
            &account.login_hint(),
        )
        .await;
    let answer = browser
        .client
        .get(format!("{callback}&redirect_to={}", encode("https://evil.example/")))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::FOUND);
    assert!(
        location(&answer).starts_with("https://app.example.com/done/x?code="),
        "{}",
        location(&answer)
    );
}

async fn unknown_and_unconfigured_providers_are_not_found(world: World) {
    let browser = Browser::new();
    problem(
        world.start_login(&browser, "twitter", None).await,
        404,
        "provider_not_found",
    )
    .await;
    problem(
        world.start_login(&browser, "Google", None).await,
        404,
        "provider_not_found",
    )
    .await;
    let callback = browser
        .client
        .get(world.app.url("/v1/auth/oauth/twitter/callback?code=a&state=b"))
        .send()
        .await
        .unwrap();
    problem(callback, 404, "provider_not_found").await;
    // A service with no provider configured.
    let bare = TestApp::spawn().await;
    let started = Browser::new()
        .client
        .get(bare.url("/v1/auth/oauth/google/start"))
        .send()
        .await
        .unwrap();
    problem(started, 404, "provider_not_found").await;
    problem(
        bare.post("/v1/auth/oauth/exchange", json!({"code": "x"})).await,
        400,
        "oauth_failed",
    )
    .await;
    problem(
        bare.post("/v1/auth/oauth/exchange", json!({})).await,
        422,
        "validation_failed",
    )
    .await;
}

async fn an_existing_account_is_joined_and_a_suspended_one_refused(world: World) {
    let ada = world.app.verified_user("ada@example.com").await;
    let pair = world
        .google_tokens(&Account::new("ada-google", "ada@example.com"))
        .await;
    assert_eq!(pair["user"]["id"], ada["user"]["id"]);
    let access = pair["access_token"].as_str().unwrap();
    let events: Value = world.app.get_auth("/v1/me/events", access).await.json().await.unwrap();
    let kinds = event_types(&events);
    assert_eq!(kinds[..2], ["login_succeeded", "oauth_linked"]);
    // The password still works: the account was verified already.
    assert_eq!(
        world.app.login("ada@example.com", PASSWORD).await.status(),
        StatusCode::OK
    );

    world.app.verified_user("grace@example.com").await;
    assert_eq!(
        world.sql("UPDATE users SET suspended = TRUE WHERE email = 'grace@example.com'"),
        1
    );
    let grace = Account::new("grace-google", "grace@example.com");
    let callback = world.login(&Browser::new(), "google", None, &grace.login_hint()).await;
    problem(callback, 403, "account_locked").await;
    let callback = world
        .login(&Browser::new(), "google", Some(ALLOWED), &grace.login_hint())
        .await;
    assert_eq!(location(&callback), format!("{ALLOWED}?error=account_locked"));
    assert_eq!(world.rows("oauth_identities"), 1, "only ada's identity is linked");
}

async fn parallel_exchanges_of_one_code_give_one_session(world: World) {
    let account = Account::new("ada", "ada@example.com");
    let callback = world
        .login(&Browser::new(), "google", Some(ALLOWED), &account.login_hint())
        .await;
    let code = query(&location(&callback), "code").unwrap();
    let answers = futures_util::future::join_all((0..6).map(|_| world.exchange(&code))).await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 400).count(), 5, "{statuses:?}");
}

async fn github_logins_need_a_verified_primary_address(world: World) {
    let callback = world.login(&Browser::new(), "github", Some(ALLOWED), "octo").await;
    assert_eq!(callback.status(), StatusCode::FOUND);
    let code = query(&location(&callback), "code").unwrap();
    let pair: Value = world.exchange(&code).await.json().await.unwrap();
    assert_eq!(pair["user"]["email"], "octo@example.com");
    assert_eq!(pair["user"]["name"], "The Octocat");
    let events: Value = world
        .app
        .get_auth("/v1/me/events", pair["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(events["events"][0]["details"]["method"], "oauth:github");
    let token_call = world.fake.seen("/login/oauth/access_token").pop().unwrap();
    assert_eq!(
        token_call.form["redirect_uri"],
        "http://auth.test/v1/auth/oauth/github/callback"
    );
    assert_eq!(token_call.form["code_verifier"].len(), 43);

    // The primary address is not verified (a verified secondary does not count).
    let callback = world.login(&Browser::new(), "github", None, "unverified").await;
    let body = problem(callback, 400, "oauth_failed").await;
    assert!(body["detail"].as_str().unwrap().contains("verified e-mail"), "{body}");
    assert_eq!(world.rows("users"), 1);
}

async fn linked_identities_are_listed_and_the_last_way_in_is_kept(world: World) {
    let github_login = || async {
        let callback = world.login(&Browser::new(), "github", Some(ALLOWED), "octo").await;
        let code = query(&location(&callback), "code").unwrap();
        let pair: Value = world.exchange(&code).await.json().await.unwrap();
        pair["access_token"].as_str().unwrap().to_owned()
    };
    let app = &world.app;
    let listed_for = |token: String| async move {
        let response = app.get_auth("/v1/me/identities", &token).await;
        response.json::<Value>().await.unwrap()
    };
    let access = github_login().await;
    let listed = listed_for(access.clone()).await;
    let identities = listed["identities"].as_array().unwrap();
    assert_eq!(identities.len(), 1, "{listed}");
    assert_eq!(identities[0]["provider"], "github");
    assert_eq!(identities[0]["email"], "octo@example.com");
    assert!(identities[0]["last_used_at"].is_null(), "the login that made the link");
    let access = github_login().await;
    let listed = listed_for(access.clone()).await;
    assert!(listed["identities"][0]["last_used_at"].is_string(), "{listed}");

    // The account has no password: GitHub is its only way in.
    let unlink = |provider: &str, token: &str| {
        let request = world
            .app
            .client
            .delete(world.app.url(&format!("/v1/me/identities/{provider}")));
        request.bearer_auth(token.to_owned()).send()
    };
    let refused = problem(unlink("github", &access).await.unwrap(), 422, "validation_failed").await;
    assert_eq!(refused["errors"][0]["field"], "provider", "{refused}");
    problem(unlink("google", &access).await.unwrap(), 404, "not_found").await;
    problem(unlink("myspace", &access).await.unwrap(), 404, "provider_not_found").await;

    // With a password (set through a reset link), GitHub may go.
    let before = world.app.mails().len();
    world
        .app
        .post("/v1/auth/password/forgot", json!({"email": "octo@example.com"}))
        .await;
    let token = world.app.wait_for_link(before + 1, "/reset-password").await;
    let reset = world
        .app
        .post("/v1/auth/password/reset", json!({"token": token, "password": PASSWORD}))
        .await;
    assert_eq!(reset.status(), 204);
    let pair: Value = world
        .app
        .login("octo@example.com", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let access = pair["access_token"].as_str().unwrap();
    // On the security page, a signed-in person unlinks it.
    let mut browser = crate::web::Browser::new(&world.app);
    browser.log_in("octo@example.com").await;
    let page = browser.get("/settings/security").await;
    assert!(page.body.contains("data-provider=\"github\""), "{}", page.body);
    let csrf = page.csrf();
    let done = browser
        .post("/settings/security/providers/github/unlink", &[("csrf", &csrf)])
        .await;
    assert_eq!(done.status, 303);
    assert_eq!(done.header("location"), "/settings/security?notice=provider_unlinked");
    problem(unlink("github", access).await.unwrap(), 404, "not_found").await;
    assert_eq!(listed_for(access.to_owned()).await["identities"], json!([]));
    let events: Value = world.app.get_auth("/v1/me/events", access).await.json().await.unwrap();
    assert_eq!(events["events"][0]["type"], "oauth_unlinked");
    assert_eq!(events["events"][0]["details"]["provider"], "github");
}

/// Presses "Link <provider>" on the security page of `browser`: the
/// provider's URL it is sent to.
async fn press_link(browser: &mut crate::web::Browser<'_>, provider: &str) -> String {
    let csrf = browser.get("/settings/security").await.csrf();
    let started = browser
        .post(
            &format!("/settings/security/providers/{provider}/link"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(started.status, 303, "{}", started.body);
    assert!(
        started.set_cookie("convosphere_oauth").is_some(),
        "the flow is bound to this browser"
    );
    started.header("location").to_owned()
}

/// Signs in at the provider as `who`: the path of the callback it sends back to.
async fn sign_in_at(provider_url: &str, provider: &str, who: &str) -> String {
    let param = if provider == "google" { "login_hint" } else { "login" };
    let at_provider = format!("{provider_url}&{param}={}", encode(who));
    let back = Browser::new()
        .follow_until(&at_provider, |u| u.starts_with(PUBLIC))
        .await;
    back.strip_prefix(PUBLIC).unwrap().to_owned()
}

/// The whole link from the settings: the callback's answer, as the browser got it.
async fn link_from_settings(browser: &mut crate::web::Browser<'_>, provider: &str, who: &str) -> crate::web::Page {
    let provider_url = press_link(browser, provider).await;
    let callback = sign_in_at(&provider_url, provider, who).await;
    browser.get(&callback).await
}

/// The providers `GET /v1/me/identities` lists.
async fn linked_providers(app: &TestApp, access: &str) -> Vec<String> {
    let listed: Value = app.get_auth("/v1/me/identities", access).await.json().await.unwrap();
    let identities = listed["identities"].as_array().unwrap();
    identities
        .iter()
        .map(|i| i["provider"].as_str().unwrap().to_owned())
        .collect()
}

async fn a_signed_in_person_links_another_provider_from_the_security_page(world: World) {
    let access = world.app.signed_in("ada@example.com").await;
    let mut ada = crate::web::Browser::new(&world.app);
    ada.log_in("ada@example.com").await;
    let page = ada.get("/settings/security").await;
    for provider in ["google", "github", "facebook"] {
        let action = format!("action=\"/settings/security/providers/{provider}/link\"");
        assert!(page.body.contains(&action), "a Link button for {provider}");
    }

    // GitHub's address (octo@…) is not the account's: the identity joins Ada anyway.
    let back = link_from_settings(&mut ada, "github", "octo").await;
    assert_eq!(back.status, 302, "{}", back.body);
    assert_eq!(
        back.header("location"),
        format!("{PUBLIC}/settings/security?linked=github")
    );
    let page = ada.get("/settings/security?linked=github").await;
    assert!(page.body.contains("The provider was linked"), "{}", page.body);
    assert!(page.body.contains("octo@example.com"));
    assert!(
        !page.body.contains("/settings/security/providers/github/link"),
        "linked: no Link button"
    );
    assert_eq!(linked_providers(&world.app, &access).await, ["github"]);
    let events: Value = world.app.get_auth("/v1/me/events", &access).await.json().await.unwrap();
    assert_eq!(events["events"][0]["type"], "oauth_linked");
    assert_eq!(events["events"][0]["details"]["via"], "settings");

    // A GitHub login now reaches Ada's account; nobody else's was made.
    let callback = world.login(&Browser::new(), "github", Some(ALLOWED), "octo").await;
    let code = query(&location(&callback), "code").unwrap();
    let pair: Value = world.exchange(&code).await.json().await.unwrap();
    assert_eq!(pair["user"]["email"], "ada@example.com");
    assert_eq!(world.rows("users"), 1);
    // The password still works: a provider's other address proves nothing of it.
    assert_eq!(world.app.login("ada@example.com", PASSWORD).await.status(), 200);

    // Pressing "Link GitHub" again (an old page) is refused before GitHub is asked.
    let csrf = ada.get("/settings/security").await.csrf();
    let again = ada
        .post("/settings/security/providers/github/link", &[("csrf", &csrf)])
        .await;
    assert_eq!(again.header("location"), "/settings/security?error=already_linked");

    // Grace cannot take the GitHub identity that is Ada's.
    world.app.signed_in("grace@example.com").await;
    let mut grace = crate::web::Browser::new(&world.app);
    grace.log_in("grace@example.com").await;
    let refused = link_from_settings(&mut grace, "github", "octo").await;
    assert_eq!(
        refused.header("location"),
        format!("{PUBLIC}/settings/security?error=identity_taken")
    );
    let page = grace.get("/settings/security?error=identity_taken").await;
    assert!(
        page.body.contains("linked to another Convosphere account"),
        "{}",
        page.body
    );
    assert_eq!(world.rows("oauth_identities"), 1);

    // A Google identity (the real OpenID Provider) links as well, and the
    // callback's state, spent, cannot be played again.
    let account = Account::new("ada-google", "ada.lovelace@gmail.example");
    let at_google = press_link(&mut ada, "google").await;
    let callback = sign_in_at(&at_google, "google", &account.login_hint()).await;
    let linked = ada.get(&callback).await;
    assert_eq!(
        linked.header("location"),
        format!("{PUBLIC}/settings/security?linked=google")
    );
    let replayed = ada.get(&callback).await;
    assert_eq!(replayed.status, 400, "{}", replayed.body);
    assert_eq!(linked_providers(&world.app, &access).await, ["github", "google"]);

    // Signed out meanwhile: the provider's answer links nothing.
    let at_facebook = press_link(&mut grace, "facebook").await;
    let csrf = grace.get("/settings/security").await.csrf();
    grace.post("/logout", &[("csrf", &csrf)]).await;
    let callback = sign_in_at(&at_facebook, "facebook", "mark").await;
    let ended = grace.get(&callback).await;
    assert_eq!(
        ended.header("location"),
        format!("{PUBLIC}/settings/security?error=session_ended")
    );
    assert_eq!(world.rows("oauth_identities"), 2);
}

async fn github_refusals_and_failures_are_oauth_failed(world: World) {
    // The person said no at GitHub: error=access_denied at the callback.
    let callback = world.login(&Browser::new(), "github", None, "deny").await;
    let body = problem(callback, 400, "oauth_failed").await;
    assert!(body["detail"].as_str().unwrap().contains("access_denied"), "{body}");
    let callback = world.login(&Browser::new(), "github", Some(ALLOWED), "deny").await;
    assert_eq!(location(&callback), format!("{ALLOWED}?error=oauth_failed"));
    // GitHub's token endpoint fails.
    let callback = world.login(&Browser::new(), "github", None, "broken").await;
    let body = problem(callback, 400, "oauth_failed").await;
    assert!(body["detail"].as_str().unwrap().contains("500"), "{body}");
    assert_eq!(world.rows("users"), 0);
}

async fn facebook_logins_use_the_graph_api_address(world: World) {
    let callback = world.login(&Browser::new(), "facebook", Some(ALLOWED), "mark").await;
    let code = query(&location(&callback), "code").unwrap();
    let pair: Value = world.exchange(&code).await.json().await.unwrap();
    assert_eq!(pair["user"]["email"], "mark@example.com");
    assert_eq!(pair["user"]["email_verified"], true);
    let callback = world.login(&Browser::new(), "facebook", None, "nomail").await;
    problem(callback, 400, "oauth_failed").await;
    assert_eq!(world.rows("users"), 1);
}

/// The people of the fake GitHub and Facebook, by the `login=` that logs
/// them in: `octo` / `mark` (verified address), `unverified` (GitHub: primary
/// not verified), `nomail` (Facebook: no address), `broken` (the token
/// endpoint answers 500); `deny` refuses (`error=access_denied`).
fn people() -> [(&'static str, Person); 5] {
    let octo = Person {
        user: json!({"id": 1, "login": "octocat", "name": "The Octocat"}),
        emails: json!([{"email": "octo@example.com", "primary": true, "verified": true, "visibility": "public"}]),
        ..Person::default()
    };
    let unverified = Person {
        user: json!({"id": 2, "login": "unv", "name": null}),
        emails: json!([
            {"email": "other@example.com", "primary": false, "verified": true, "visibility": null},
            {"email": "unv@example.com", "primary": true, "verified": false, "visibility": null}
        ]),
        ..Person::default()
    };
    let mark = Person {
        me: json!({"id": "fb-1", "name": "Mark Example", "email": "mark@example.com"}),
        ..Person::default()
    };
    let nomail = Person {
        me: json!({"id": "fb-2", "name": "No Mail"}),
        ..Person::default()
    };
    let broken = Person {
        token_status: 500,
        ..Person::default()
    };
    [
        ("octo", octo),
        ("unverified", unverified),
        ("mark", mark),
        ("nomail", nomail),
        ("broken", broken),
    ]
}

/// Logs in with the password and turns 2FA on; answers the TOTP secret and
/// the recovery codes.
async fn ada_with_2fa(app: &TestApp) -> (String, Vec<String>) {
    let access = app.signed_in("ada@example.com").await;
    enable_totp(app, &access).await
}

async fn an_account_with_2fa_needs_its_code_after_a_provider_login(world: World) {
    let (secret, recovery) = ada_with_2fa(&world.app).await;
    let account = Account::new("ada-google", "ada@example.com");
    let callback = world
        .login(&Browser::new(), "google", Some(ALLOWED), &account.login_hint())
        .await;
    let code = query(&location(&callback), "code").unwrap();
    let exchange = |extra: Value| {
        let mut body = json!({ "code": code });
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        world.app.post("/v1/auth/oauth/exchange", body)
    };

    // Without the second factor: asked for it, and the code still works.
    problem(exchange(json!({})).await, 401, "mfa_required").await;
    problem(exchange(json!({"totp_code": "000000"})).await, 401, "invalid_mfa_code").await;
    // The step of confirming is spent; the next one logs in.
    let pair = exchange(json!({"totp_code": totp_at(&secret, 1)})).await;
    assert_eq!(pair.status(), StatusCode::OK);
    let pair: Value = pair.json().await.unwrap();
    let access = pair["access_token"].as_str().unwrap();
    let events: Value = world.app.get_auth("/v1/me/events", access).await.json().await.unwrap();
    assert_eq!(events["events"][0]["type"], "login_succeeded");
    assert_eq!(events["events"][0]["details"]["method"], "oauth:google+totp");
    assert_eq!(events["events"][1]["details"]["reason"], "invalid_mfa_code");
    // Used: the code is gone, whatever comes with it.
    let again = exchange(json!({"totp_code": totp_at(&secret, 0)})).await;
    problem(again, 400, "oauth_failed").await;

    // A recovery code serves as well, once.
    let callback = world
        .login(&Browser::new(), "google", Some(ALLOWED), &account.login_hint())
        .await;
    let code = query(&location(&callback), "code").unwrap();
    let body = json!({"code": code, "recovery_code": recovery[0].to_uppercase()});
    let pair = world.app.post("/v1/auth/oauth/exchange", body).await;
    assert_eq!(pair.status(), StatusCode::OK);
    let pair: Value = pair.json().await.unwrap();
    let access = pair["access_token"].as_str().unwrap();
    let sessions: Value = world.app.get_auth("/v1/sessions", access).await.json().await.unwrap();
    assert_eq!(sessions["sessions"].as_array().unwrap().len(), 3, "{sessions}");
}

async fn a_browser_signs_in_with_a_provider_and_then_its_code(world: World) {
    let (secret, _) = ada_with_2fa(&world.app).await;
    let browser = Browser::new();
    let account = Account::new("ada-google", "ada@example.com");
    // No redirect_to: a person at the web pages, sent to the second-factor step.
    let callback = world.login(&browser, "google", None, &account.login_hint()).await;
    assert_eq!(callback.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&callback), "/login/two-factor");
    let step = browser
        .client
        .get(world.app.url("/login/two-factor"))
        .send()
        .await
        .unwrap();
    assert_eq!(step.status(), StatusCode::OK);
    let page = step.text().await.unwrap();
    let (csrf, ticket) = (hidden(&page, "csrf").unwrap(), hidden(&page, "ticket").unwrap());
    let post = |code: String| {
        browser
            .client
            .post(world.app.url("/login/two-factor"))
            .form(&[
                ("csrf", csrf.as_str()),
                ("ticket", ticket.as_str()),
                ("code", code.as_str()),
            ])
            .send()
    };
    let wrong = post("000000".into()).await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(
        wrong.text().await.unwrap().contains("name=\"ticket\""),
        "the step is offered again"
    );
    let signed_in = post(totp_at(&secret, 1)).await.unwrap();
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&signed_in), "/dashboard");
    let dashboard = browser.client.get(world.app.url("/dashboard")).send().await.unwrap();
    assert_eq!(dashboard.status(), StatusCode::OK);
    assert!(dashboard.text().await.unwrap().contains("ada@example.com"));

    // The step's page without a login waiting for it sends to the login page.
    let stranger = Browser::new()
        .client
        .get(world.app.url("/login/two-factor"))
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status(), StatusCode::SEE_OTHER);
    assert!(location(&stranger).starts_with("/login"));
}
