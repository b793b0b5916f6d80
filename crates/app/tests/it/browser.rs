//! A person's journey through the web pages in a real browser: headless
//! Chromium driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`, which .ci/run installs). Skipped with a notice when
//! they are missing.
//!
//! With `CONVOSPHERE_SCREENSHOTS=DIR` set, the main pages are saved as
//! PNGs at desktop and phone width (`just screenshots` writes docs/screenshots/).

use super::harness::*;
use convosphere_domain::mfa::{step_of, TotpSecret};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const DESKTOP: (u32, u32) = (1280, 900);
const PHONE: (u32, u32) = (390, 844);

/// A chromedriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start() -> Option<Self> {
        if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
            eprintln!("NOTICE: {CHROMIUM} or {CHROMEDRIVER} is missing: skipping the browser journey");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Some(driver);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not listen on port {port}");
    }

    async fn browser(&self) -> Client {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--hide-scrollbars", "--force-device-scale-factor=1", "--lang=en-US",
                         format!("--window-size={},{}", DESKTOP.0, DESKTOP.1)],
            }),
        );
        ClientBuilder::native()
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a browser session")
    }
}

/// Saves screenshots of pages when `CONVOSPHERE_SCREENSHOTS` names a directory.
struct Camera(Option<PathBuf>);

impl Camera {
    fn from_env() -> Self {
        Self(std::env::var_os("CONVOSPHERE_SCREENSHOTS").map(PathBuf::from))
    }

    /// The whole page at `width`, saved as `NAME-LABEL.png`.
    async fn shoot_at(&self, browser: &Client, name: &str, label: &str, (width, height): (u32, u32)) {
        let Some(dir) = &self.0 else { return };
        std::fs::create_dir_all(dir).unwrap();
        browser.set_window_size(width, height).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        // The window is a little taller than the page's viewport.
        let sizes: Value = browser
            .execute(
                "return [document.documentElement.scrollHeight, window.innerHeight]",
                vec![],
            )
            .await
            .unwrap();
        let full = sizes[0]
            .as_u64()
            .unwrap_or(u64::from(height))
            .clamp(u64::from(height), 4000);
        let chrome = u64::from(height).saturating_sub(sizes[1].as_u64().unwrap_or(u64::from(height)));
        browser.set_window_size(width, (full + chrome) as u32).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        let png = browser.screenshot().await.unwrap();
        std::fs::write(dir.join(format!("{name}-{label}.png")), png).unwrap();
        browser.set_window_size(DESKTOP.0, DESKTOP.1).await.unwrap();
    }

    /// The page at desktop and phone width.
    async fn shoot(&self, browser: &Client, name: &str) {
        self.shoot_at(browser, name, "desktop", DESKTOP).await;
        self.shoot_at(browser, name, "phone", PHONE).await;
    }
}

fn code(secret: &str, offset: i64) -> String {
    let secret = TotpSecret::from_bytes(data_encoding::BASE32_NOPAD.decode(secret.as_bytes()).unwrap());
    format!("{:06}", secret.code_at_step(step_of(chrono::Utc::now()) + offset))
}

async fn fill(browser: &Client, css: &str, text: &str) {
    let input = browser.find(Locator::Css(css)).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(text).await.unwrap();
}

async fn click(browser: &Client, css: &str) {
    browser.find(Locator::Css(css)).await.unwrap().click().await.unwrap();
}

/// Clicks what leads to another page, and waits until that page has loaded.
async fn follow(browser: &Client, css: &str) {
    browser.execute("window.__left = false;", vec![]).await.unwrap();
    click(browser, css).await;
    for _ in 0..200 {
        let loaded = browser
            .execute(
                "return window.__left === undefined && document.readyState === 'complete';",
                vec![],
            )
            .await;
        if matches!(loaded, Ok(Value::Bool(true))) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no new page after clicking {css}");
}

/// Fills the login form of the page with the address and the password, and sends it.
async fn submit_login(browser: &Client, email: &str) {
    fill(browser, "#f-email", email).await;
    fill(browser, "#f-password", PASSWORD).await;
    follow(browser, "form[action='/login'] button[type=submit]").await;
}

/// Opens an e-mailed link: a page with a button (`h1` says what it does), pressed.
async fn use_link(browser: &Client, url: &str, h1: &str, button: &str) {
    browser.goto(url).await.unwrap();
    assert_eq!(text(browser, "h1").await, h1);
    follow(browser, button).await;
}

async fn text(browser: &Client, css: &str) -> String {
    browser.find(Locator::Css(css)).await.unwrap().text().await.unwrap()
}

async fn path(browser: &Client) -> String {
    let url = browser.current_url().await.unwrap();
    match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    }
}

async fn authz(app: &TestApp, key: &str) -> reqwest::Response {
    app.get_auth("/v1/authz?scope=agents:read", key).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_up_uses_an_api_key_ends_a_session_and_turns_on_two_factor() {
    let Some(driver) = Driver::start().await else { return };
    let app = TestApp::spawn().await;
    let browser = driver.browser().await;
    let camera = Camera::from_env();
    let email = "ada@example.com";

    // Sign up.
    browser.goto(&app.url("/signup")).await.unwrap();
    camera.shoot(&browser, "signup").await;
    fill(&browser, "#f-name", "Ada Lovelace").await;
    fill(&browser, "#f-email", email).await;
    fill(&browser, "#f-password", PASSWORD).await;
    fill(&browser, "#f-company", "Analytical Engines").await;
    follow(&browser, "form[action='/signup'] button[type=submit]").await;
    assert_eq!(text(&browser, "h1").await, "Check your inbox");

    // The link from the outbox: a page with a button; the button verifies.
    let token = app.wait_for_link(1, "/verify-email").await;
    let link = app.url(&format!("/verify-email?token={token}"));
    use_link(
        &browser,
        &link,
        "Confirm your e-mail address",
        "form[action='/verify-email'] button",
    )
    .await;
    assert_eq!(path(&browser).await, "/login?notice=email_verified");
    assert!(text(&browser, ".alert-success").await.contains("confirmed"));
    camera.shoot(&browser, "login").await;

    // Log in.
    submit_login(&browser, email).await;
    assert_eq!(path(&browser).await, "/dashboard");
    assert_eq!(text(&browser, "h1").await, "Welcome, Ada");
    assert!(browser.source().await.unwrap().contains("100 requests per minute"));
    camera.shoot(&browser, "dashboard").await;

    // An API key with two scopes, read from the page once.
    browser.goto(&app.url("/settings/api-keys")).await.unwrap();
    fill(&browser, "#f-name", "Production API Key").await;
    click(&browser, "input[value='agents:read']").await;
    click(&browser, "input[value='chat:write']").await;
    follow(&browser, "form[action='/settings/api-keys'] button[type=submit]").await;
    let key = browser
        .find(Locator::Id("new-key"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert!(key.starts_with("cs_") && key.len() == 50, "{key}");
    assert!(text(&browser, ".secret-panel")
        .await
        .contains("Copy the key now — it won't be shown again"));
    camera.shoot(&browser, "api-keys").await;
    let allowed = authz(&app, &key).await;
    assert_eq!(allowed.status(), 200);
    assert_eq!(allowed.headers()["x-auth-scopes"], "agents:read chat:write");
    browser.goto(&app.url("/settings/api-keys")).await.unwrap();
    assert!(!browser.source().await.unwrap().contains(&key), "shown once");

    // Its usage: a chart whose text alternative says what it shows.
    assert_eq!(authz(&app, &key).await.status(), 200);
    let mut described = String::new();
    for _ in 0..50 {
        follow(
            &browser,
            &format!("tr[data-key-prefix='{}'] td[data-label='Name'] a", &key[..11]),
        )
        .await;
        described = text(&browser, ".chart .chart-text").await;
        if described.starts_with("2 requests") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        browser.goto(&app.url("/settings/api-keys")).await.unwrap();
    }
    assert!(described.starts_with("2 requests from"), "{described}");
    assert!(described.contains("2 allowed"), "{described}");
    let svg = browser.find(Locator::Css(".chart svg")).await.unwrap();
    assert_eq!(svg.attr("role").await.unwrap().as_deref(), Some("img"));
    camera.shoot(&browser, "api-key-usage").await;
    browser.goto(&app.url("/settings/api-keys")).await.unwrap();

    // Revoke it on the page, after a confirmation; it is refused at once.
    follow(
        &browser,
        &format!("tr[data-key-prefix='{}'] a[href$='/revoke']", &key[..11]),
    )
    .await;
    assert!(text(&browser, "h1").await.starts_with("Revoke"));
    follow(&browser, "button.btn-danger").await;
    assert_eq!(path(&browser).await, "/settings/api-keys?notice=key_revoked");
    assert_eq!(
        text(&browser, &format!("tr[data-key-prefix='{}'] .badge", &key[..11])).await,
        "Revoked"
    );
    problem(authz(&app, &key).await, 401, "api_key_revoked").await;

    // End another session (one opened through the API).
    let other = app.tokens(email).await;
    let other_access = other["access_token"].as_str().unwrap();
    let other_id = other["session_id"].as_str().unwrap();
    browser.goto(&app.url("/settings/sessions")).await.unwrap();
    let rows = browser.find_all(Locator::Css("tbody tr")).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert!(text(&browser, "tr.is-current").await.contains("This session"));
    camera.shoot(&browser, "sessions").await;
    follow(&browser, &format!("tr[data-session='{other_id}'] button")).await;
    assert_eq!(path(&browser).await, "/settings/sessions?notice=session_ended");
    assert_eq!(browser.find_all(Locator::Css("tbody tr")).await.unwrap().len(), 1);
    problem(app.get_auth("/v1/me", other_access).await, 401, "session_expired").await;

    // Turn on 2FA with a code computed from the secret the page shows.
    browser.goto(&app.url("/settings/security")).await.unwrap();
    camera.shoot(&browser, "security").await;
    follow(&browser, "form[action='/settings/security/two-factor'] button").await;
    assert!(browser.find(Locator::Css("img.qr")).await.is_ok());
    let secret = text(&browser, "#totp-secret").await.replace(' ', "");
    camera.shoot(&browser, "two-factor-setup").await;
    fill(&browser, "#f-code", "000000").await;
    follow(
        &browser,
        "form[action='/settings/security/two-factor/confirm'] button[type=submit]",
    )
    .await;
    assert!(text(&browser, ".alert-error").await.contains("invalid_mfa_code"));
    fill(&browser, "#f-code", &code(&secret, 0)).await;
    follow(
        &browser,
        "form[action='/settings/security/two-factor/confirm'] button[type=submit]",
    )
    .await;
    let codes = browser.find_all(Locator::Css("#recovery-codes li")).await.unwrap();
    assert_eq!(codes.len(), 10);
    camera.shoot(&browser, "recovery-codes").await;

    // Log out, and in again with the password and a code.
    follow(&browser, "form[action='/logout'] button").await;
    assert_eq!(path(&browser).await, "/login?notice=logged_out");
    submit_login(&browser, email).await;
    assert_eq!(text(&browser, "h1").await, "Two-factor authentication");
    camera.shoot(&browser, "login-two-factor").await;
    // The code that confirmed the setup is spent; the next step's works.
    fill(&browser, "#f-code", &code(&secret, 1)).await;
    follow(&browser, "form[action='/login/two-factor'] button[type=submit]").await;
    assert_eq!(path(&browser).await, "/dashboard");
    assert!(browser.source().await.unwrap().contains("badge-on"));

    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_changes_the_address_downloads_the_data_and_deletes_the_account() {
    let Some(driver) = Driver::start().await else { return };
    let app = TestApp::spawn().await;
    let browser = driver.browser().await;
    let camera = Camera::from_env();
    let (old, new) = ("ada@example.com", "ada.lovelace@example.com");
    app.verified_user(old).await;
    let api = app.tokens(old).await;
    let api_access = api["access_token"].as_str().unwrap();
    browser.goto(&app.url("/login")).await.unwrap();
    submit_login(&browser, old).await;

    // Ask for the change on the account page: nothing changes yet.
    follow(&browser, "nav a[href='/settings/account']").await;
    assert_eq!(text(&browser, "h1").await, "Account");
    let mails = app.mails().len();
    fill(&browser, "#f-email", new).await;
    follow(&browser, "form[action='/settings/account/email'] button[type=submit]").await;
    assert_eq!(path(&browser).await, "/settings/account?notice=email_change_sent");
    assert!(text(&browser, "[data-pending-email]").await.contains(new));
    camera.shoot(&browser, "account").await;
    assert_eq!(app.get_auth("/v1/me", api_access).await.status(), 200);

    // The link of the new address: a page with a button; the button changes it.
    let sent = app.wait_for_mails(mails + 2).await;
    let link = sent
        .iter()
        .find_map(|mail| link_token(mail, "/confirm-email"))
        .expect("a /confirm-email link");
    let link = app.url(&format!("/confirm-email?token={link}"));
    use_link(
        &browser,
        &link,
        "Confirm your new e-mail address",
        "form[action='/confirm-email'] button",
    )
    .await;
    assert_eq!(path(&browser).await, "/settings/account?notice=email_changed");
    assert!(text(&browser, "#email-title + p").await.contains(new));
    // Every other session ended; the old address signs in no more.
    problem(app.get_auth("/v1/me", api_access).await, 401, "session_expired").await;
    problem(app.login(old, PASSWORD).await, 401, "invalid_credentials").await;

    // "Download your data": the page's link answers the whole document.
    let href = browser
        .find(Locator::Css("a[download]"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    let document = browser
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch(arguments[0]).then(r => r.json()).then(done, e => done(String(e)));",
            vec![json!(href)],
        )
        .await
        .unwrap();
    assert_eq!(document["user"]["email"], new, "{document}");
    let kinds = event_types(&document);
    assert!(kinds.contains(&"email_changed"), "{kinds:?}");

    // Delete it: a wrong confirmation word changes nothing, the right one ends it all.
    fill(&browser, "#f-password", PASSWORD).await;
    fill(&browser, "#f-confirm", "delete").await;
    follow(&browser, "form[action='/settings/account/delete'] button[type=submit]").await;
    assert!(browser.find(Locator::Css(".field-error, .alert-error")).await.is_ok());
    assert_eq!(app.login(new, PASSWORD).await.status(), 200);
    fill(&browser, "#f-password", PASSWORD).await;
    fill(&browser, "#f-confirm", "DELETE").await;
    follow(&browser, "form[action='/settings/account/delete'] button[type=submit]").await;
    assert_eq!(path(&browser).await, "/login?notice=account_deleted");
    problem(app.login(new, PASSWORD).await, 401, "invalid_credentials").await;
    browser.goto(&app.url("/settings/account")).await.unwrap();
    assert!(path(&browser).await.starts_with("/login"), "signed out");
    // The address may sign up again.
    assert_eq!(app.signup(new).await.status(), 202);

    browser.close().await.unwrap();
}

/// WebDriver's virtual authenticator (WebAuthn Level 2, §11.3): a CTAP2
/// platform authenticator with user verification, holding discoverable
/// credentials, added to the browser session.
#[derive(Debug)]
struct AddVirtualAuthenticator;

impl fantoccini::wd::WebDriverCompatibleCommand for AddVirtualAuthenticator {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/webauthn/authenticator",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let options = json!({
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": true,
            "hasUserVerification": true,
            "isUserConsenting": true,
            "isUserVerified": true,
        });
        (http::Method::POST, Some(options.to_string()))
    }
}

/// A Chrome DevTools command, through chromedriver's `goog/cdp/execute`.
#[derive(Debug)]
struct Cdp(&'static str, Value);

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/goog/cdp/execute", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({"cmd": self.0, "params": self.1});
        (http::Method::POST, Some(body.to_string()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_adds_a_passkey_and_signs_in_with_it_alone() {
    let Some(driver) = Driver::start().await else { return };
    // Passkeys need a secure context and a domain: http://localhost is both.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let origin = format!("http://localhost:{port}");
    let bind = format!("127.0.0.1:{port}");
    let app = TestApp::with(&[("AUTH_BIND", &bind), ("AUTH_PUBLIC_URL", &origin)]).await;
    let at = |path: &str| format!("{origin}{path}");
    let browser = driver.browser().await;
    let camera = Camera::from_env();
    browser.issue_cmd(AddVirtualAuthenticator).await.unwrap();
    let email = "ada@example.com";
    let access = app.signed_in(email).await;

    browser.goto(&at("/login")).await.unwrap();
    submit_login(&browser, email).await;
    assert_eq!(path(&browser).await, "/dashboard");

    // Add one on the security page: the browser's prompt is the authenticator's.
    browser.goto(&at("/settings/security")).await.unwrap();
    fill(&browser, "#passkey-name", "This laptop").await;
    follow(&browser, "#passkey-add button[type=submit]").await;
    assert_eq!(path(&browser).await, "/settings/security?notice=passkey_added");
    assert!(text(&browser, "tr[data-passkey]").await.contains("This laptop"));
    camera.shoot(&browser, "security-passkey").await;
    let listed: Value = app.get_auth("/v1/me/passkeys", &access).await.json().await.unwrap();
    assert_eq!(listed["passkeys"][0]["name"], "This laptop", "{listed}");

    // Signed out, the passkey alone signs in: no address, no password. The
    // login page asks the browser for a passkey as autofill (conditional
    // mediation), which the virtual authenticator grants without a click.
    follow(&browser, "form[action='/logout'] button").await;
    let mut at_page = String::new();
    for _ in 0..100 {
        at_page = path(&browser).await;
        if at_page == "/dashboard" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(at_page, "/dashboard");
    assert_eq!(text(&browser, "h1").await, "Welcome, Ada");
    let events: Value = app.get_auth("/v1/me/events", &access).await.json().await.unwrap();
    assert_eq!(events["events"][0]["type"], "login_succeeded", "{events}");
    assert_eq!(events["events"][0]["details"]["method"], "passkey");

    // In a browser without passkey autofill, the button does it.
    let no_autofill = "PublicKeyCredential.isConditionalMediationAvailable = undefined;";
    let script = json!({ "source": no_autofill });
    browser
        .issue_cmd(Cdp("Page.addScriptToEvaluateOnNewDocument", script))
        .await
        .unwrap();
    follow(&browser, "form[action='/logout'] button").await;
    assert_eq!(path(&browser).await, "/login?notice=logged_out");
    follow(&browser, "#passkey-login button[type=submit]").await;
    assert_eq!(path(&browser).await, "/dashboard");

    browser.close().await.unwrap();
}
