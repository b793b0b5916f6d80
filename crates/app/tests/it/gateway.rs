//! A real gateway: nginx with `auth_request`, configured by the example that
//! users copy (docs/nginx-auth-request.conf, its addresses replaced), in
//! front of an upstream that echoes what it was told about the caller.
//!
//! Skipped, with a notice, when `nginx` is not installed.

use super::harness::*;
use reqwest::Response;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The example configuration, as users copy it.
const EXAMPLE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/nginx-auth-request.conf"
));

/// The nginx binary: on the `PATH` or where the packages put it.
fn nginx_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("nginx"))
        .find(|candidate| candidate.is_file())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Replaces `from`, which must occur exactly once, so that the test notices
/// when the example changes shape.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "{from:?} once in the example");
    text.replacen(from, to, 1)
}

/// nginx in the foreground, one process, everything in a temporary prefix;
/// killed on drop.
struct Nginx {
    base: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// The example in front of the service at `auth` (host:port), with an
    /// upstream (a second server of the same nginx) that answers
    /// `upstream saw user=… scopes=… plan=… authorization=…`.
    async fn start(binary: &Path, auth: &str) -> Self {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut nginx = Self::try_start(binary, auth);
            let started = Instant::now();
            loop {
                if let Some(status) = nginx.child.try_wait().unwrap() {
                    // A port taken between choosing and binding it: try others.
                    let log = nginx.error_log();
                    assert!(
                        attempts < 3 && log.contains("Address already in use"),
                        "nginx exited ({status}):\n{log}"
                    );
                    break;
                }
                if reqwest::get(format!("{}/healthz-of-nginx", nginx.base)).await.is_ok() {
                    return nginx;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "nginx did not start:\n{}",
                    nginx.error_log()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    fn try_start(binary: &Path, auth: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().display().to_string();
        let (listen, upstream) = (free_port(), free_port());
        let site = replace_once(EXAMPLE, "server 127.0.0.1:8080;", &format!("server {auth};"));
        let site = replace_once(
            &site,
            "server 127.0.0.1:3000;",
            &format!("server 127.0.0.1:{upstream};"),
        );
        let site = replace_once(&site, "listen 80;", &format!("listen 127.0.0.1:{listen};"));
        std::fs::write(dir.path().join("convosphere.conf"), site).unwrap();
        let main = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/convosphere.conf;
    server {{
        listen 127.0.0.1:{upstream};
        default_type text/plain;
        location / {{
            return 200 "upstream saw user=$http_x_auth_user_id scopes=$http_x_auth_scopes plan=$http_x_auth_plan authorization=$http_authorization";
        }}
    }}
}}
"#
        );
        std::fs::write(dir.path().join("nginx.conf"), main).unwrap();
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        Self {
            base: format!("http://127.0.0.1:{listen}"),
            child,
            dir,
        }
    }

    /// A request to a protected path of the example (`agents:read`).
    async fn get(&self, credential: Option<&str>) -> Response {
        let mut request = reqwest::Client::new()
            .get(format!("{}/v1/agents/42", self.base))
            // A client cannot pass itself off as someone else.
            .header("x-auth-user-id", "forged")
            .header("x-auth-plan", "pro");
        if let Some(credential) = credential {
            request = request.bearer_auth(credential);
        }
        request.send().await.unwrap()
    }
}

fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().unwrap().to_owned())
}

/// A verified user's access token, and the API key made with `scopes`.
async fn key_of(app: &TestApp, email: &str, scopes: &[&str]) -> (String, Value) {
    let user = app.verified_user(email).await;
    let pair = app.tokens(email).await;
    let access = pair["access_token"].as_str().unwrap().to_owned();
    let response = app
        .post_auth("/v1/api-keys", &access, json!({"name": "gateway", "scopes": scopes}))
        .await;
    assert_eq!(response.status(), 201);
    let mut key: Value = response.json().await.unwrap();
    key["user_id"] = user["user"]["id"].clone();
    (access, key)
}

/// A problem+json answer of nginx itself.
async fn gateway_problem(response: Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        header(&response, "content-type").as_deref(),
        Some("application/problem+json")
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (body["status"].as_u64(), body["code"].as_str()),
        (Some(u64::from(status)), Some(code))
    );
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_with_the_example_configuration() {
    let Some(binary) = nginx_binary() else {
        eprintln!("nginx is not installed: skipping the gateway test");
        return;
    };
    let app = TestApp::with(&[("AUTH_RATE_LIMIT_FREE", "5")]).await;
    let nginx = Nginx::start(&binary, app.base.trim_start_matches("http://")).await;

    // A key with the scope: the upstream answers, told who is calling.
    let (_, reader) = key_of(&app, "ada@example.com", &["agents:read", "chat:read"]).await;
    let response = nginx.get(reader["key"].as_str()).await;
    assert_eq!(response.status(), 200, "{}", nginx.error_log());
    assert_eq!(header(&response, "ratelimit-limit").as_deref(), Some("5"));
    assert_eq!(header(&response, "ratelimit-remaining").as_deref(), Some("3"));
    let seen = response.text().await.unwrap();
    let user_id = reader["user_id"].as_str().unwrap();
    assert_eq!(
        seen,
        format!("upstream saw user={user_id} scopes=agents:read chat:read plan=free authorization=")
    );

    // A key without it: 403, the missing scope named.
    let (_, writer) = key_of(&app, "grace@example.com", &["agents:write"]).await;
    let response = nginx.get(writer["key"].as_str()).await;
    let challenge = header(&response, "www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains(r#"error="insufficient_scope""#) && challenge.contains(r#"scope="agents:read""#),
        "{challenge}"
    );
    gateway_problem(response, 403, "forbidden").await;

    // A revoked key: 401, and why.
    let (access, revoked) = key_of(&app, "alan@example.com", &["agents:read"]).await;
    let response = app
        .client
        .delete(app.url(&format!("/v1/api-keys/{}", revoked["id"].as_str().unwrap())))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let response = nginx.get(revoked["key"].as_str()).await;
    let challenge = header(&response, "www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer ")
            && challenge.contains(r#"error="invalid_token""#)
            && challenge.contains("revoked"),
        "{challenge}"
    );
    gateway_problem(response, 401, "unauthorized").await;

    // No credential, or a malformed one: 401.
    let response = nginx.get(None).await;
    assert!(header(&response, "www-authenticate").is_some_and(|c| c.starts_with("Bearer ")));
    gateway_problem(response, 401, "unauthorized").await;
    gateway_problem(nginx.get(Some("cs_not_a_key")).await, 401, "unauthorized").await;

    // A used-up plan: 429 with Retry-After (not the 500 auth_request makes of it).
    let (_, busy) = key_of(&app, "edsger@example.com", &["agents:read"]).await;
    let key = busy["key"].as_str().unwrap();
    let mut passed = 0;
    let limited = loop {
        let response = nginx.get(Some(key)).await;
        if response.status() != 200 {
            break response;
        }
        passed += 1;
        assert!(passed <= 4, "more requests passed than the plan allows");
    };
    assert_eq!(passed, 4, "the key's creation was the first of five");
    let retry_after = header(&limited, "retry-after").expect("Retry-After");
    assert!(retry_after.parse::<u64>().unwrap() >= 1);
    assert_eq!(header(&limited, "ratelimit-remaining").as_deref(), Some("0"));
    gateway_problem(limited, 429, "rate_limited").await;
    assert!(
        !nginx.error_log().contains("auth request unexpected status"),
        "{}",
        nginx.error_log()
    );

    // The service gone: 503, not a pass.
    drop(app);
    let started = Instant::now();
    let gone = loop {
        let response = nginx.get(reader["key"].as_str()).await;
        if response.status() != 200 {
            break response;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "nginx still passes requests"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    gateway_problem(gone, 503, "unavailable").await;
}
