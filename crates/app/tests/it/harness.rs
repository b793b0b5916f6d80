//! Spawns the real service on port 0 with a fresh data directory.

use convosphere_auth::Config;
use reqwest::{Client, Response};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

pub const PASSWORD: &str = "correct horse battery staple";

/// The `AUTH_PUBLIC_URL` of the service under test unless a test names another.
const DEFAULT_PUBLIC_URL: &str = "http://auth.test";

pub struct TestApp {
    pub base: String,
    /// The base URL of `/metrics` when `AUTH_METRICS_BIND` is set.
    pub metrics_base: Option<String>,
    pub client: Client,
    pub dir: tempfile::TempDir,
    /// The `AUTH_DATABASE_URL` of a PostgreSQL run (SQLite in `dir` otherwise).
    pub database_url: Option<String>,
    /// `AUTH_PUBLIC_URL`, the origin of the e-mailed links.
    pub public_url: String,
    handle: actix_web::dev::ServerHandle,
    _database: Option<PgDatabase>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Stop accepting; the runtime ends with the test anyway.
        drop(self.handle.stop(false));
    }
}

/// A fresh PostgreSQL database for one test, dropped afterwards.
pub struct PgDatabase {
    server_url: String,
    name: String,
    pub url: String,
}

impl PgDatabase {
    /// `None` (with a notice) when `TEST_DATABASE_URL` is unset.
    pub fn create() -> Option<Self> {
        use diesel::{Connection, RunQueryDsl};
        let Ok(server_url) = std::env::var("TEST_DATABASE_URL") else {
            eprintln!("TEST_DATABASE_URL is not set: skipping the PostgreSQL run of this test");
            return None;
        };
        let name = format!("convosphere_app_test_{:016x}", rand::random::<u64>());
        let mut conn = diesel::PgConnection::establish(&server_url).expect("TEST_DATABASE_URL answers");
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .unwrap();
        let base = server_url
            .rsplit_once('/')
            .map_or(server_url.as_str(), |(base, _)| base);
        let url = format!("{base}/{name}");
        Some(Self { server_url, name, url })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        use diesel::{Connection, RunQueryDsl};
        if let Ok(mut conn) = diesel::PgConnection::establish(&self.server_url) {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).execute(&mut conn);
        }
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::with(&[]).await
    }

    /// The service with extra settings (short durations, small limits…).
    pub async fn with(settings: &[(&str, &str)]) -> Self {
        Self::start(settings, None).await
    }

    /// The service on a fresh PostgreSQL database; `None` without `TEST_DATABASE_URL`.
    pub async fn postgres(settings: &[(&str, &str)]) -> Option<Self> {
        let database = PgDatabase::create()?;
        Some(Self::start(settings, Some(database)).await)
    }

    async fn start(settings: &[(&str, &str)], database: Option<PgDatabase>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let database_url = database.as_ref().map(|d| d.url.clone());
        let (base, metrics_base, handle) = launch(settings, dir.path(), database_url.as_deref()).await;
        Self {
            base,
            metrics_base,
            client: client(),
            dir,
            database_url,
            public_url: public_url(settings),
            handle,
            _database: database,
        }
    }

    /// Another instance of the service on this one's data directory and
    /// database, as a second replica behind a load balancer would be. Read
    /// mails and run the command line through the first: the replica's own
    /// `dir` is empty. Drop it before the first.
    pub async fn replica(&self, settings: &[(&str, &str)]) -> Self {
        let (base, metrics_base, handle) = launch(settings, self.dir.path(), self.database_url.as_deref()).await;
        Self {
            base,
            metrics_base,
            client: client(),
            dir: tempfile::tempdir().unwrap(),
            database_url: self.database_url.clone(),
            public_url: public_url(settings),
            handle,
            _database: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.client.post(self.url(path)).json(&body).send().await.unwrap()
    }

    pub async fn post_auth(&self, path: &str, token: &str, body: Value) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_auth(&self, path: &str, token: &str) -> Response {
        self.client.get(self.url(path)).bearer_auth(token).send().await.unwrap()
    }

    /// `GET path` without a credential: the body as JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        serde_json::from_str(&self.get_text(path).await).unwrap()
    }

    /// `GET path` without a credential: the body as text.
    pub async fn get_text(&self, path: &str) -> String {
        self.client
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn outbox(&self) -> PathBuf {
        self.dir.path().join("outbox")
    }

    /// The mails in the outbox, oldest first, decoded enough to read links.
    pub fn mails(&self) -> Vec<String> {
        read_mails(&self.outbox())
    }

    /// Waits until the outbox holds `count` mails, then returns them.
    pub async fn wait_for_mails(&self, count: usize) -> Vec<String> {
        for _ in 0..100 {
            let mails = self.mails();
            if mails.len() >= count {
                return mails;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("expected {count} mails, found {}", self.mails().len());
    }

    /// The token of the newest link to `path` (`/verify-email`, `/reset-password`).
    pub async fn wait_for_link(&self, count: usize, path: &str) -> String {
        let mails = self.wait_for_mails(count).await;
        link_token_at(mails.last().unwrap(), &self.public_url, path)
            .unwrap_or_else(|| panic!("no {path} link in {}", mails.last().unwrap()))
    }

    pub async fn signup(&self, email: &str) -> Response {
        self.post(
            "/v1/auth/signup",
            json!({"name": "Ada Lovelace", "email": email, "password": PASSWORD, "company": "Analytical Engines"}),
        )
        .await
    }

    /// Signs up and verifies through the e-mailed link.
    pub async fn verified_user(&self, email: &str) -> Value {
        let before = self.mails().len();
        assert_eq!(self.signup(email).await.status(), 202);
        let token = self.wait_for_link(before + 1, "/verify-email").await;
        let response = self.post("/v1/auth/verify-email", json!({ "token": token })).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post("/v1/auth/login", json!({"email": email, "password": password}))
            .await
    }

    /// Signs up, verifies and logs in; returns the access token.
    pub async fn signed_in(&self, email: &str) -> String {
        self.verified_user(email).await;
        self.tokens(email).await["access_token"].as_str().unwrap().to_owned()
    }

    /// Logs in and returns the token pair.
    pub async fn tokens(&self, email: &str) -> Value {
        let response = self.login(email, PASSWORD).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Creates an API key and returns the answer (with `key`, shown once).
    pub async fn new_key(&self, access: &str, name: &str, scopes: &[&str]) -> Value {
        let response = self
            .post_auth("/v1/api-keys", access, json!({"name": name, "scopes": scopes}))
            .await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 201, "key creation: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Runs the binary as an operator would, on this app's data directory
    /// and database.
    pub fn cli(&self, args: &[&str]) -> Output {
        let env: Vec<(&str, &str)> = self
            .database_url
            .iter()
            .map(|url| ("AUTH_DATABASE_URL", url.as_str()))
            .collect();
        run_cli(self.dir.path(), args, &env)
    }
}

/// Runs the binary with a data directory and extra settings.
pub fn run_cli(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_convosphere-auth"))
        .args(args)
        .env("AUTH_DATA_DIR", data_dir)
        .env("AUTH_LOG_FORMAT", "json")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// Starts the service on `data_dir` (and a PostgreSQL database, if given).
async fn launch(
    settings: &[(&str, &str)],
    data_dir: &Path,
    database_url: Option<&str>,
) -> (String, Option<String>, actix_web::dev::ServerHandle) {
    let mut env: Vec<(String, String)> = vec![
        ("AUTH_BIND".into(), "127.0.0.1:0".into()),
        ("AUTH_DATA_DIR".into(), data_dir.display().to_string()),
        ("AUTH_PUBLIC_URL".into(), DEFAULT_PUBLIC_URL.into()),
        ("AUTH_LOG_FORMAT".into(), "json".into()),
        ("AUTH_IP_RATE_LIMIT".into(), "100000".into()),
    ];
    if let Some(url) = database_url {
        env.push(("AUTH_DATABASE_URL".into(), url.to_owned()));
    }
    env.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config = Config::from_sources(None, env).unwrap();
    let started = convosphere_auth::start(config).await.unwrap();
    let handle = started.server.handle();
    tokio::spawn(started.server);
    let metrics_base = started.metrics_addr.map(|addr| format!("http://{addr}"));
    (format!("http://{}", started.addr), metrics_base, handle)
}

fn client() -> Client {
    Client::builder()
        .user_agent("convosphere-tests/1.0")
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub fn read_mails(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    paths.sort();
    paths
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|raw| raw.replace("=\r\n", "").replace("=\n", "").replace("=3D", "="))
        .collect()
}

/// The `AUTH_PUBLIC_URL` of these settings (the harness's own by default).
fn public_url(settings: &[(&str, &str)]) -> String {
    let named = settings.iter().rev().find(|(name, _)| *name == "AUTH_PUBLIC_URL");
    named.map_or(DEFAULT_PUBLIC_URL, |(_, url)| url).to_owned()
}

/// The token of the `<http://auth.test><path>?token=` link in a mail.
pub fn link_token(mail: &str, path: &str) -> Option<String> {
    link_token_at(mail, DEFAULT_PUBLIC_URL, path)
}

/// The token of the `<origin><path>?token=` link in a mail.
pub fn link_token_at(mail: &str, origin: &str, path: &str) -> Option<String> {
    let marker = format!("{origin}{path}?token=");
    let start = mail.find(&marker)? + marker.len();
    Some(
        mail[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect(),
    )
}

/// Asserts a problem+json answer and returns its body.
pub async fn problem(response: Response, status: u16, code: &str) -> Value {
    let (url, actual) = (response.url().clone(), response.status());
    let content_type = response.headers().get("content-type").cloned();
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "status of {url}: {text}");
    assert_eq!(content_type.unwrap(), "application/problem+json", "{url}: {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
    assert!(body["type"].is_string() && body["title"].is_string() && body["detail"].is_string());
    body
}

/// The `type` of every event in a body's `events` list, in its order.
pub fn event_types(body: &Value) -> Vec<&str> {
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect()
}

/// Declares each `async fn name(app: TestApp)` as two tests, `name::sqlite`
/// and `name::postgres` (the latter skipped without `TEST_DATABASE_URL`).
macro_rules! on_both_backends {
    ($($name:ident($settings:expr)),+ $(,)?) => {
        $(
            mod $name {
                use $crate::harness::TestApp;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(TestApp::with($settings).await).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(app) = TestApp::postgres($settings).await {
                        super::$name(app).await;
                    }
                }
            }
        )+
    };
}

/// The claims of an access token, unverified (the test reads what it carries).
pub fn claims(access: &str) -> Value {
    use base64::Engine;
    let payload = access.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}
