//! The web pages without a browser: CSRF, security headers, caching, the
//! session cookie, and links from e-mails that mail scanners fetch.

use super::harness::*;
use reqwest::header::HeaderMap;
use reqwest::redirect::Policy;
use serde_json::Value;
use std::collections::BTreeMap;

on_both_backends!(
    a_post_without_the_right_csrf_token_changes_nothing(&[]),
    a_mail_scanner_fetching_the_verification_link_verifies_nothing(&[]),
    logout_and_revocation_end_the_browser_session_at_once(&[]),
);

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   frame-ancestors 'none'; form-action 'self'";

/// A page's answer.
pub struct Page {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap_or(""))
    }

    /// The `Set-Cookie` header of a cookie.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }

    /// The CSRF token of the page's forms.
    pub fn csrf(&self) -> String {
        hidden(&self.body, "csrf").unwrap_or_else(|| panic!("no CSRF field in {}", self.body))
    }
}

/// The value of a hidden field of a page.
pub fn hidden(body: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body.find(&marker)? + marker.len();
    Some(body[start..].split('"').next()?.replace("&amp;", "&"))
}

/// A cookie jar that follows no redirects, so answers can be read as sent.
pub struct Browser<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
    pub cookies: BTreeMap<String, String>,
}

impl<'a> Browser<'a> {
    pub fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            client: reqwest::Client::builder()
                .redirect(Policy::none())
                .user_agent("Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0 Safari/537.36")
                .build()
                .unwrap(),
            cookies: BTreeMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn keep(&mut self, response: reqwest::Response) -> Page {
        for value in response.headers().get_all("set-cookie") {
            let value = value.to_str().unwrap();
            let (pair, attributes) = value.split_once(';').unwrap_or((value, ""));
            let (name, cookie) = pair.split_once('=').unwrap();
            if attributes.contains("Max-Age=0") || cookie.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), cookie.to_owned());
            }
        }
        Page {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.text().await.unwrap(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let response = self
            .client
            .get(self.app.url(path))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep(response).await
    }

    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let response = self
            .client
            .post(self.app.url(path))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        self.keep(response).await
    }

    /// Logs in through the login page; answers the redirect.
    pub async fn log_in(&mut self, email: &str) -> Page {
        let csrf = self.get("/login").await.csrf();
        let page = self
            .post("/login", &[("csrf", &csrf), ("email", email), ("password", PASSWORD)])
            .await;
        assert_eq!(page.status, 303, "{}", page.body);
        page
    }
}

/// The key shown once on the API keys page.
pub fn new_key(body: &str) -> String {
    let start = body.find("id=\"new-key\"").expect("a new key on the page");
    body[start..]
        .split("value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned()
}

async fn api_keys(app: &TestApp, access: &str) -> Vec<Value> {
    let body: Value = app.get_auth("/v1/api-keys", access).await.json().await.unwrap();
    body["api_keys"].as_array().unwrap().clone()
}

async fn a_post_without_the_right_csrf_token_changes_nothing(app: TestApp) {
    let access = app.signed_in("ada@example.com").await;

    // Anonymous forms: no token, a wrong token, or no CSRF cookie.
    let mut stranger = Browser::new(&app);
    let csrf = stranger.get("/login").await.csrf();
    for fields in [
        vec![("email", "ada@example.com"), ("password", PASSWORD)],
        vec![("csrf", "forged"), ("email", "ada@example.com"), ("password", PASSWORD)],
    ] {
        let page = stranger.post("/login", &fields).await;
        assert_eq!(page.status, 403);
        assert!(page.body.contains("csrf_failed"), "{}", page.body);
        assert!(page.set_cookie("convosphere_session").is_none());
    }
    let mut cookieless = Browser::new(&app);
    let page = cookieless
        .post(
            "/login",
            &[("csrf", &csrf), ("email", "ada@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(page.status, 403, "a token without its cookie is refused");
    let mails = app.mails().len();
    let page = stranger
        .post(
            "/signup",
            &[("name", "Eve"), ("email", "eve@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(page.status, 403);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(app.mails().len(), mails, "no signup, no mail");

    // Signed-in forms: the token is bound to the session.
    let mut ada = Browser::new(&app);
    ada.log_in("ada@example.com").await;
    let page = ada.get("/settings/api-keys").await;
    assert_eq!(page.status, 200);
    let token = page.csrf();
    let mut other = Browser::new(&app);
    other.log_in("ada@example.com").await;
    let others_token = other.get("/settings/api-keys").await.csrf();
    assert_ne!(token, others_token);
    for bad in [None, Some("forged"), Some(others_token.as_str()), Some(csrf.as_str())] {
        let mut fields = vec![("name", "ci"), ("scopes", "chat:read")];
        if let Some(bad) = bad {
            fields.push(("csrf", bad));
        }
        let page = ada.post("/settings/api-keys", &fields).await;
        assert_eq!(page.status, 403, "{bad:?}");
        assert!(page.header("content-type").starts_with("text/html"));
        assert!(page.body.contains("csrf_failed"));
    }
    assert!(api_keys(&app, &access).await.is_empty(), "nothing was created");
    let page = ada.get("/settings/api-keys/not-a-key/revoke").await;
    assert_eq!(page.status, 404);
    assert!(
        page.header("content-type").starts_with("text/html"),
        "a page, not problem JSON"
    );
    assert!(page.body.contains("not_found"));
    let page = ada.post("/logout", &[]).await;
    assert_eq!(page.status, 403);
    assert_eq!(ada.get("/dashboard").await.status, 200, "still signed in");

    let page = ada
        .post(
            "/settings/api-keys",
            &[("csrf", &token), ("name", "ci"), ("scopes", "chat:read")],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(api_keys(&app, &access).await.len(), 1);
}

#[tokio::test]
async fn pages_carry_security_headers_and_secrets_are_not_stored() {
    let app = TestApp::spawn().await;
    app.verified_user("ada@example.com").await;
    let mut browser = Browser::new(&app);
    for path in [
        "/login",
        "/signup",
        "/forgot-password",
        "/reset-password?token=abc",
        "/verify-email?token=abc",
    ] {
        let page = browser.get(path).await;
        assert_eq!(page.status, 200, "{path}");
        assert_eq!(page.header("content-type"), "text/html; charset=utf-8", "{path}");
        assert_eq!(page.header("content-security-policy"), CSP, "{path}");
        assert_eq!(page.header("x-frame-options"), "DENY", "{path}");
        assert_eq!(page.header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(page.header("referrer-policy"), "no-referrer", "{path}");
        assert_eq!(page.header("cache-control"), "no-store", "{path}");
        assert!(
            !page.body.contains("<script>") && !page.body.contains(" style=") && !page.body.contains(" onclick="),
            "no inline script or style: {path}"
        );
    }

    browser.log_in("ada@example.com").await;
    let csrf = browser.get("/settings/api-keys").await.csrf();
    let page = browser
        .post(
            "/dashboard/profile",
            &[
                ("csrf", &csrf),
                ("name", "Ada King"),
                ("company", ""),
                ("country", "GB"),
                ("phone", ""),
            ],
        )
        .await;
    assert_eq!(page.header("location"), "/dashboard?notice=profile_saved");
    let access = app.tokens("ada@example.com").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let me: Value = app.get_auth("/v1/me", &access).await.json().await.unwrap();
    assert_eq!(me["user"]["name"], "Ada King");
    assert_eq!(me["user"]["country"], "GB");
    assert_eq!(me["user"]["company"], Value::Null, "a blank field clears it");
    let page = browser
        .post(
            "/settings/api-keys",
            &[
                ("csrf", &csrf),
                ("name", "Production API Key"),
                ("scopes", "agents:read"),
                ("scopes", "chat:write"),
            ],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.header("cache-control"), "no-store");
    assert_eq!(page.header("referrer-policy"), "no-referrer");
    assert!(page.body.contains("Copy the key now — it won't be shown again"));
    let key = new_key(&page.body);
    assert_eq!(key.len(), 50, "{key}");
    let list = browser.get("/settings/api-keys").await;
    assert!(!list.body.contains(&key), "the key is shown once");
    assert!(list.body.contains(&key[..11]), "its prefix is listed");

    let page = browser.post("/settings/security/two-factor", &[("csrf", &csrf)]).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("cache-control"), "no-store");
    assert!(
        page.body.contains("data:image/svg+xml;base64,"),
        "a QR code drawn on the server"
    );

    let css = app.client.get(app.url("/assets/app.css")).send().await.unwrap();
    assert_eq!(css.status(), 200);
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    assert_eq!(css.headers()["x-content-type-options"], "nosniff");
    let js = app.client.get(app.url("/assets/app.js")).send().await.unwrap();
    assert_eq!(js.headers()["content-type"], "text/javascript; charset=utf-8");
}

async fn a_mail_scanner_fetching_the_verification_link_verifies_nothing(app: TestApp) {
    assert_eq!(app.signup("ada@example.com").await.status(), 202);
    let token = app.wait_for_link(1, "/verify-email").await;
    let link = format!("/verify-email?token={token}");
    // A scanner fetches the link, twice, and follows nothing.
    for _ in 0..2 {
        let page = app.client.get(app.url(&link)).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let body = page.text().await.unwrap();
        assert!(body.contains("Confirm my e-mail address"), "{body}");
    }
    problem(app.login("ada@example.com", PASSWORD).await, 403, "email_not_verified").await;

    // A person presses the button.
    let mut browser = Browser::new(&app);
    let page = browser.get(&link).await;
    assert_eq!(hidden(&page.body, "token").as_deref(), Some(token.as_str()));
    let csrf = page.csrf();
    let page = browser
        .post("/verify-email", &[("csrf", &csrf), ("token", &token)])
        .await;
    assert_eq!(page.status, 303);
    assert_eq!(page.header("location"), "/login?notice=email_verified");
    assert_eq!(app.login("ada@example.com", PASSWORD).await.status(), 200);
    let page = browser
        .post("/verify-email", &[("csrf", &csrf), ("token", &token)])
        .await;
    assert_eq!(page.status, 400, "a link works once");
    assert!(page.body.contains("link_invalid"));
}

#[tokio::test]
async fn the_session_cookie_is_http_only_lax_and_host_bound_over_https() {
    for (public_url, session, csrf, secure) in [
        ("http://auth.test", "convosphere_session", "convosphere_csrf", false),
        (
            "https://auth.test",
            "__Host-convosphere_session",
            "__Host-convosphere_csrf",
            true,
        ),
    ] {
        let app = TestApp::with(&[("AUTH_PUBLIC_URL", public_url)]).await;
        assert_eq!(app.signup("ada@example.com").await.status(), 202);
        let mail = app.wait_for_mails(1).await.remove(0);
        let marker = format!("{public_url}/verify-email?token=");
        let token: String = mail[mail.find(&marker).unwrap() + marker.len()..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        let verified = app
            .post("/v1/auth/verify-email", serde_json::json!({ "token": token }))
            .await;
        assert_eq!(verified.status(), 200);
        let mut browser = Browser::new(&app);
        let page = browser.get("/login").await;
        let csrf_cookie = page
            .set_cookie(csrf)
            .unwrap_or_else(|| panic!("{csrf} in {:?}", page.headers));
        let login = browser.log_in("ada@example.com").await;
        assert_eq!(login.header("location"), "/dashboard");
        let cookie = login.set_cookie(session).unwrap();
        for set in [&cookie, &csrf_cookie] {
            assert!(set.contains("; HttpOnly"), "{set}");
            assert!(set.contains("; SameSite=Lax"), "{set}");
            assert!(set.contains("; Path=/"), "{set}");
            assert!(!set.contains("Domain="), "{set}");
            assert_eq!(set.contains("; Secure"), secure, "{set}");
        }
        assert!(cookie.contains("; Max-Age=604800"), "{cookie}");
        let value = browser.cookies[session].clone();
        assert!(!value.contains("eyJ"), "the tokens are sealed, not readable: {value}");
    }
}

async fn logout_and_revocation_end_the_browser_session_at_once(app: TestApp) {
    app.verified_user("ada@example.com").await;
    let mut browser = Browser::new(&app);
    browser.log_in("ada@example.com").await;
    let stolen = browser.cookies.clone();
    let page = browser.get("/dashboard").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Welcome, Ada"));
    let page = browser.post("/logout", &[("csrf", &page.csrf())]).await;
    assert_eq!(page.status, 303);
    assert_eq!(page.header("location"), "/login?notice=logged_out");
    assert!(page.set_cookie("convosphere_session").unwrap().contains("Max-Age=0"));
    // The old cookie (say, copied before the logout) is dead at once.
    browser.cookies = stolen;
    let page = browser.get("/dashboard").await;
    assert_eq!(page.status, 303);
    assert!(
        page.header("location").starts_with("/login"),
        "{}",
        page.header("location")
    );

    // A browser session is one of the API's: listed there, and ended from there.
    let mut browser = Browser::new(&app);
    browser.log_in("ada@example.com").await;
    let access = app.tokens("ada@example.com").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let sessions: Value = app.get_auth("/v1/sessions", &access).await.json().await.unwrap();
    let sessions = sessions["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    let browser_session = sessions.iter().find(|s| s["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(browser.get("/settings/sessions").await.status, 200);
    let response = app
        .client
        .delete(app.url(&format!("/v1/sessions/{browser_session}")))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let page = browser.get("/settings/sessions").await;
    assert_eq!(page.status, 303);
    assert_eq!(
        page.header("location"),
        "/login?next=%2Fsettings%2Fsessions&notice=session_expired"
    );
}

#[tokio::test]
async fn an_expired_access_token_is_refreshed_once_for_parallel_pages() {
    // Two seconds, not one: `exp` is in whole seconds, so a one-second token
    // can be dead a few milliseconds after its refresh issued it.
    let app = TestApp::with(&[("AUTH_ACCESS_TOKEN_TTL", "2s")]).await;
    app.verified_user("ada@example.com").await;
    let mut browser = Browser::new(&app);
    browser.log_in("ada@example.com").await;
    let old = browser.cookies.clone();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    // Two tabs load at once with the same cookie: one refresh, both pages.
    let mut tab = Browser::new(&app);
    tab.cookies = old.clone();
    let (first, second) = tokio::join!(browser.get("/dashboard"), tab.get("/settings/api-keys"));
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(second.status, 200, "{}", second.body);
    let renewed = first.set_cookie("convosphere_session").unwrap();
    assert!(renewed.contains("HttpOnly"));
    assert_eq!(second.set_cookie("convosphere_session").unwrap(), renewed);
    assert_ne!(browser.cookies, old);
    let access = app.tokens("ada@example.com").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let sessions: Value = app.get_auth("/v1/sessions", &access).await.json().await.unwrap();
    assert_eq!(
        sessions["sessions"].as_array().unwrap().len(),
        2,
        "the session lives on"
    );
}

#[tokio::test]
async fn pages_speak_plainly_and_offer_only_configured_providers() {
    let app = TestApp::with(&[
        ("AUTH_OAUTH_GITHUB_CLIENT_ID", "gh-client"),
        ("AUTH_OAUTH_GITHUB_CLIENT_SECRET", "gh-secret"),
        ("AUTH_IP_RATE_LIMIT", "8"),
    ])
    .await;
    let mut browser = Browser::new(&app);
    let page = browser.get("/login").await;
    assert!(page.body.contains("href=\"/v1/auth/oauth/github/start\""));
    assert!(page.body.contains("Sign in with GitHub"));
    assert!(!page.body.contains("/v1/auth/oauth/google/start"));
    assert!(!page.body.contains("/v1/auth/oauth/facebook/start"));
    let csrf = page.csrf();

    // Inline messages from the API's rules.
    let page = browser
        .post(
            "/signup",
            &[
                ("csrf", &csrf),
                ("name", ""),
                ("email", "not-an-address"),
                ("password", "short"),
            ],
        )
        .await;
    assert_eq!(page.status, 422);
    assert!(
        page.body.contains("This is not a valid e-mail address."),
        "{}",
        page.body
    );
    assert!(page.body.contains("The password must have at least 8 characters."));
    assert!(page.body.contains("aria-invalid=\"true\""));
    assert!(page.body.contains("value=\"not-an-address\""), "what was typed stays");

    let page = browser
        .post(
            "/login",
            &[
                ("csrf", &csrf),
                ("email", "nobody@example.com"),
                ("password", "wrong password!"),
            ],
        )
        .await;
    assert_eq!(page.status, 401);
    assert!(page.body.contains("The e-mail address or the password is not right."));
    assert!(page.body.contains("invalid_credentials"));

    // The per-IP budget of the unauthenticated endpoints covers the pages.
    let mut last = 0;
    for _ in 0..8 {
        last = browser
            .post("/forgot-password", &[("csrf", &csrf), ("email", "ada@example.com")])
            .await
            .status;
    }
    assert_eq!(last, 429);
    let page = browser
        .post("/forgot-password", &[("csrf", &csrf), ("email", "ada@example.com")])
        .await;
    assert!(page.body.contains("Too many attempts"), "{}", page.body);
    assert!(page.header("content-type").starts_with("text/html"));

    let page = browser.get("/dashboard").await;
    assert_eq!(page.status, 303);
    assert_eq!(page.header("location"), "/login");
    let page = browser.get("/settings/api-keys").await;
    assert_eq!(page.header("location"), "/login?next=%2Fsettings%2Fapi-keys");
}
