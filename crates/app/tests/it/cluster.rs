//! Two processes of the real binary behind one load balancer's worth of
//! state: one PostgreSQL database, one Redis, the same key files and public
//! URL. What one instance is told, the other honours: the plan's budget is
//! shared, and a revocation, a logout, a suspension or a plan change made
//! through one instance (or the command line) reaches the other within one
//! second, even when the other had the credential cached.
//!
//! Skipped, with a notice, without `TEST_DATABASE_URL` or a reachable Redis
//! (`TEST_REDIS_URL`, by default `redis://127.0.0.1:6379`).

use super::harness::*;
use reqwest::{Client, Response};
use serde_json::{json, Value};
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How soon a change made on one instance must be honoured by the other.
const WITHIN: Duration = Duration::from_secs(1);
/// How often the other instance is asked meanwhile.
const POLL: Duration = Duration::from_millis(50);
const EMAIL: &str = "ada@example.com";

/// The clusters take turns: two processes each, and the one-second checks
/// should not be measured against another cluster's start-up on a small machine.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The binary under test: cargo's, or the one `CONVOSPHERE_AUTH_BIN` names
/// (worktrees that share a `CARGO_TARGET_DIR` overwrite each other's
/// `debug/convosphere-auth`; this pins the build to test).
fn binary() -> std::ffi::OsString {
    std::env::var_os("CONVOSPHERE_AUTH_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_convosphere-auth").into())
}

/// The binary with the given settings and none inherited from the test's environment.
fn command(settings: &[(String, String)]) -> Command {
    let mut command = Command::new(binary());
    for (name, _) in std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v))) {
        if name.starts_with("AUTH_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command
        .env("AUTH_LOG_FORMAT", "json")
        .envs(settings.iter().map(|(k, v)| (k, v)));
    command
}

/// The address in the service's `listening` log line.
fn listening_addr(line: &str) -> Option<String> {
    let event: Value = serde_json::from_str(line).ok()?;
    (event["message"] == "listening").then(|| event["addr"].as_str().map(str::to_owned))?
}

/// One `convosphere-auth serve` process, killed on drop.
struct Instance {
    name: &'static str,
    base: String,
    client: Client,
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let logs = self.logs.lock().unwrap();
            let tail = &logs[logs.len().saturating_sub(60)..];
            eprintln!("--- the last logs of instance {}:\n{}", self.name, tail.join("\n"));
        }
    }
}

impl Instance {
    /// Starts the process on a free port and waits until `/readyz` answers 200.
    async fn start(name: &'static str, settings: &[(String, String)]) -> Self {
        let mut child = command(settings)
            .arg("serve")
            .env("AUTH_BIND", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        // The logs are read all along (a full pipe would block the service)
        // and kept for failure messages; the first `listening` gives the port.
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        std::thread::spawn({
            let logs = Arc::clone(&logs);
            move || {
                let mut addr_tx = Some(addr_tx);
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(addr) = listening_addr(&line) {
                        if let Some(tx) = addr_tx.take() {
                            let _ = tx.send(addr);
                        }
                    }
                    logs.lock().unwrap().push(line);
                }
            }
        });
        let mut instance = Self {
            name,
            base: String::new(),
            client: Client::builder()
                .user_agent("convosphere-cluster-tests/1.0")
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            child,
            logs,
        };
        match tokio::time::timeout(Duration::from_secs(30), addr_rx).await {
            Ok(Ok(addr)) => instance.base = format!("http://{addr}"),
            _ => panic!("instance {name} did not start:\n{}", instance.logs()),
        }
        let started = Instant::now();
        loop {
            let ready = instance.client.get(instance.url("/readyz")).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return instance;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "instance {name} never became ready:\n{}",
                instance.logs()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post(&self, path: &str, body: Value) -> Response {
        self.client.post(self.url(path)).json(&body).send().await.unwrap()
    }

    async fn post_auth(&self, path: &str, credential: &str, body: Value) -> Response {
        let request = self.client.post(self.url(path)).bearer_auth(credential);
        request.json(&body).send().await.unwrap()
    }

    async fn get_auth(&self, path: &str, credential: &str) -> Response {
        let request = self.client.get(self.url(path)).bearer_auth(credential);
        request.send().await.unwrap()
    }

    async fn delete_auth(&self, path: &str, credential: &str) -> Response {
        let request = self.client.delete(self.url(path)).bearer_auth(credential);
        request.send().await.unwrap()
    }

    /// The gateway check for `agents:read`.
    async fn authz(&self, credential: &str) -> Response {
        self.get_auth("/v1/authz?scope=agents:read", credential).await
    }

    /// Logs in and returns the token pair.
    async fn tokens(&self, email: &str) -> Value {
        let response = self
            .post("/v1/auth/login", json!({"email": email, "password": PASSWORD}))
            .await;
        assert_eq!(response.status(), 200, "login on {}", self.name);
        response.json().await.unwrap()
    }

    /// Creates an API key with `agents:read` and returns the answer (with `key`).
    async fn create_key(&self, access_token: &str) -> Value {
        let response = self
            .post_auth(
                "/v1/api-keys",
                access_token,
                json!({"name": "cluster", "scopes": ["agents:read"]}),
            )
            .await;
        assert_eq!(response.status(), 201, "key creation on {}", self.name);
        response.json().await.unwrap()
    }
}

/// `EMAIL`'s credentials.
struct Owner {
    access: String,
    refresh: String,
    key: String,
    key_id: String,
}

/// Two instances on one PostgreSQL database and one Redis.
struct Cluster {
    // Fields drop in order: the processes end before their files and database go.
    a: Instance,
    b: Instance,
    /// What every process of the cluster is given, the command line included.
    settings: Vec<(String, String)>,
    dir_a: tempfile::TempDir,
    dir_b: tempfile::TempDir,
    _database: PgDatabase,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

/// `TEST_REDIS_URL` (or the default) if something listens there.
fn reachable_redis() -> Option<String> {
    let url = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let parsed = reqwest::Url::parse(&url).ok()?;
    let host = parsed.host_str()?.to_owned();
    let port = parsed.port().unwrap_or(6379);
    let reachable = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
        .ok()
        .into_iter()
        .flatten()
        .any(|addr| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok());
    if reachable {
        Some(url)
    } else {
        eprintln!("no Redis answers at {url} (TEST_REDIS_URL): skipping the two-instance test");
        None
    }
}

impl Cluster {
    /// Starts A, which generates the key files, then B with A's key files.
    /// `None` (with a notice) without PostgreSQL or Redis.
    async fn start(extra: &[(&str, &str)]) -> Option<Self> {
        let redis_url = reachable_redis()?;
        let database = PgDatabase::create()?;
        let turn = ONE_AT_A_TIME.lock().await;
        let dir_a = tempfile::tempdir().unwrap();
        let dir_b = tempfile::tempdir().unwrap();
        let mut settings: Vec<(String, String)> = [
            ("AUTH_DATABASE_URL", database.url.as_str()),
            ("AUTH_RATE_LIMIT_BACKEND", "redis"),
            ("AUTH_REDIS_URL", redis_url.as_str()),
            ("AUTH_PUBLIC_URL", "http://auth.test"),
            ("AUTH_IP_RATE_LIMIT", "100000"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();

        let mut settings_a = settings.clone();
        settings_a.push(("AUTH_DATA_DIR".into(), dir_a.path().display().to_string()));
        let a = Instance::start("A", &settings_a).await;

        let jwt_key = dir_a.path().join("jwt-signing-key.pem");
        let secret_key = dir_a.path().join("secret.key");
        assert!(jwt_key.is_file() && secret_key.is_file(), "A generated its key files");
        settings.push(("AUTH_JWT_KEY_FILE".into(), jwt_key.display().to_string()));
        settings.push(("AUTH_SECRET_KEY_FILE".into(), secret_key.display().to_string()));
        let mut settings_b = settings.clone();
        settings_b.push(("AUTH_DATA_DIR".into(), dir_b.path().display().to_string()));
        let b = Instance::start("B", &settings_b).await;
        assert!(
            !dir_b.path().join("jwt-signing-key.pem").exists(),
            "B used A's signing key"
        );

        let jwks_a = a.client.get(a.url("/.well-known/jwks.json")).send().await.unwrap();
        let jwks_b = b.client.get(b.url("/.well-known/jwks.json")).send().await.unwrap();
        assert_eq!(
            jwks_a.text().await.unwrap(),
            jwks_b.text().await.unwrap(),
            "both instances verify tokens with one key"
        );
        Some(Self {
            a,
            b,
            settings,
            dir_a,
            dir_b,
            _database: database,
            _turn: turn,
        })
    }

    /// `EMAIL`'s account, made on A, with a token pair and an API key made there.
    async fn owner_with_key(&self) -> Owner {
        self.verified_user(EMAIL).await;
        let pair = self.a.tokens(EMAIL).await;
        let text = |value: &Value| value.as_str().unwrap().to_owned();
        let created = self.a.create_key(pair["access_token"].as_str().unwrap()).await;
        Owner {
            access: text(&pair["access_token"]),
            refresh: text(&pair["refresh_token"]),
            key: text(&created["key"]),
            key_id: text(&created["id"]),
        }
    }

    /// Signs up on A and verifies through the link in A's outbox.
    async fn verified_user(&self, email: &str) {
        let response = self
            .a
            .post(
                "/v1/auth/signup",
                json!({"name": "Ada Lovelace", "email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(response.status(), 202);
        let outbox = self.dir_a.path().join("outbox");
        let mut token = None;
        for _ in 0..200 {
            token = read_mails(&outbox)
                .iter()
                .rev()
                .find_map(|mail| link_token(mail, "/verify-email"));
            if token.is_some() {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        let token = token.expect("a verification mail in A's outbox");
        let response = self.a.post("/v1/auth/verify-email", json!({ "token": token })).await;
        assert_eq!(response.status(), 200);
    }

    /// Runs a `user …` command with the cluster's settings.
    async fn cli(&self, args: &[&str]) -> Output {
        let mut command = command(&self.settings);
        command.args(args).env("AUTH_DATA_DIR", self.dir_b.path().join("cli"));
        let output = tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }
}

/// Asks `check` every [`POLL`] until it answers `Some`, and fails unless
/// that happens in a check begun within [`WITHIN`] of `since` (the moment
/// the change was acknowledged).
async fn within_a_second<T, F, Fut>(since: Instant, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = since;
    loop {
        let asked = started.elapsed();
        if let Some(answer) = check().await {
            assert!(asked <= WITHIN, "{what}: only after {asked:?}");
            eprintln!("{what}: after {asked:?}");
            return answer;
        }
        assert!(asked <= WITHIN, "{what}: not within {WITHIN:?}");
        tokio::time::sleep(POLL).await;
    }
}

/// The status and problem body of a refusal, `None` for a 200.
async fn refusal(response: Response) -> Option<(u16, Value)> {
    let status = response.status().as_u16();
    if status == 200 {
        return None;
    }
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(content_type, "application/problem+json");
    Some((status, response.json().await.unwrap()))
}

fn header(response: &Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_budget_is_shared_by_both_instances() {
    let Some(cluster) = Cluster::start(&[("AUTH_RATE_LIMIT_FREE", "10")]).await else {
        return;
    };
    cluster.verified_user(EMAIL).await;
    let pair = cluster.a.tokens(EMAIL).await;
    let access = pair["access_token"].as_str().unwrap();

    // Every authenticated request counts, the key's creation (on B, with
    // a token issued by A) included: it is the first of the ten.
    let response = cluster
        .b
        .post_auth(
            "/v1/api-keys",
            access,
            json!({"name": "cluster", "scopes": ["agents:read"]}),
        )
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(header(&response, "ratelimit-limit"), "10");
    assert_eq!(header(&response, "ratelimit-remaining"), "9");
    let created: Value = response.json().await.unwrap();
    let key = created["key"].as_str().unwrap();

    // Then the key, on A and B in turn: nine more succeed, counting down
    // one budget, and then both instances refuse.
    let mut answers = Vec::new();
    for i in 0..16 {
        let node = if i % 2 == 0 { &cluster.a } else { &cluster.b };
        let response = node.authz(key).await;
        let status = response.status().as_u16();
        let remaining = header(&response, "ratelimit-remaining");
        if status == 429 {
            assert!(header(&response, "retry-after").parse::<u64>().unwrap() >= 1);
            assert_eq!(remaining, "0");
            problem(response, 429, "rate_limited").await;
        } else {
            assert_eq!(status, 200, "authz on {}", node.name);
        }
        answers.push((node.name, status, remaining));
    }
    let succeeded: Vec<_> = answers.iter().filter(|(_, status, _)| *status == 200).collect();
    assert_eq!(1 + succeeded.len(), 10, "ten requests in all succeed: {answers:?}");
    assert!(
        answers[..9].iter().all(|(_, status, _)| *status == 200),
        "the successes come first: {answers:?}"
    );
    let remaining: Vec<&str> = answers[..9].iter().map(|(_, _, r)| r.as_str()).collect();
    assert_eq!(remaining, ["8", "7", "6", "5", "4", "3", "2", "1", "0"], "{answers:?}");
    for name in ["A", "B"] {
        assert!(
            answers[9..]
                .iter()
                .any(|(node, status, _)| *node == name && *status == 429),
            "{name} refuses too: {answers:?}"
        );
    }
    // The user's own token shares the budget.
    problem(cluster.b.get_auth("/v1/me", access).await, 429, "rate_limited").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_on_one_instance_is_refused_by_the_other_within_a_second() {
    let Some(cluster) = Cluster::start(&[]).await else {
        return;
    };
    let owner = cluster.owner_with_key().await;
    let (access, key, id) = (owner.access.as_str(), owner.key.as_str(), owner.key_id.as_str());

    // B knows the key now (and keeps it in its cache).
    for _ in 0..3 {
        assert_eq!(cluster.b.authz(key).await.status(), 200);
    }

    let response = cluster.a.delete_auth(&format!("/v1/api-keys/{id}"), access).await;
    assert_eq!(response.status(), 204);
    let changed = Instant::now();
    let b = &cluster.b;
    let (status, body) = within_a_second(changed, "B refuses the revoked key", move || async move {
        refusal(b.authz(key).await).await
    })
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("api_key_revoked")),
        "{body}"
    );
    problem(cluster.a.authz(key).await, 401, "api_key_revoked").await;
    problem(cluster.b.authz(key).await, 401, "api_key_revoked").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_logged_out_on_one_instance_is_refused_by_the_other_within_a_second() {
    let Some(cluster) = Cluster::start(&[]).await else {
        return;
    };
    cluster.verified_user(EMAIL).await;
    let pair = cluster.a.tokens(EMAIL).await;
    let access = pair["access_token"].as_str().unwrap();

    // B has verified the token and read the session (both cached).
    for _ in 0..3 {
        assert_eq!(cluster.b.get_auth("/v1/me", access).await.status(), 200);
        assert_eq!(cluster.b.authz(access).await.status(), 200);
    }

    let response = cluster.a.post_auth("/v1/auth/logout", access, json!({})).await;
    assert_eq!(response.status(), 204);
    let changed = Instant::now();
    let b = &cluster.b;
    let (status, body) = within_a_second(changed, "B refuses the ended session", move || async move {
        refusal(b.get_auth("/v1/me", access).await).await
    })
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(
        ["session_expired", "invalid_token"].contains(&body["code"].as_str().unwrap()),
        "{body}"
    );
    let refused = refusal(cluster.b.authz(access).await).await;
    assert_eq!(refused.map(|(status, _)| status), Some(401));
    // The session's refresh token is dead on both.
    for node in [&cluster.a, &cluster.b] {
        let response = node
            .post("/v1/auth/refresh", json!({"refresh_token": pair["refresh_token"]}))
            .await;
        assert_eq!(response.status(), 401, "refresh on {}", node.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_change_from_the_command_line_reaches_both_instances_within_a_second() {
    let Some(cluster) = Cluster::start(&[]).await else {
        return;
    };
    let owner = cluster.owner_with_key().await;
    let (access, key) = (owner.access.as_str(), owner.key.as_str());

    // Both instances have read the account (plan free) into their caches.
    for node in [&cluster.a, &cluster.b] {
        let response = node.authz(key).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-auth-plan"), "free");
        assert_eq!(header(&response, "ratelimit-limit"), "100");
    }

    cluster.cli(&["user", "set-plan", EMAIL, "pro"]).await;
    let changed = Instant::now();
    for node in [&cluster.a, &cluster.b] {
        let limit = within_a_second(changed, "the new plan applies", move || async move {
            let response = node.authz(key).await;
            assert_eq!(response.status(), 200);
            (header(&response, "x-auth-plan") == "pro").then(|| header(&response, "ratelimit-limit"))
        })
        .await;
        assert_eq!(limit, "10000", "the pro budget on {}", node.name);
        let me: Value = node.get_auth("/v1/me", access).await.json().await.unwrap();
        assert_eq!(me["user"]["plan"], "pro", "on {}", node.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspension_from_the_command_line_reaches_both_instances_within_a_second() {
    let Some(cluster) = Cluster::start(&[]).await else {
        return;
    };
    let owner = cluster.owner_with_key().await;
    let (access, key) = (owner.access.as_str(), owner.key.as_str());

    // Both instances have the key, the session and the account cached.
    for node in [&cluster.a, &cluster.b] {
        for _ in 0..2 {
            assert_eq!(node.authz(key).await.status(), 200);
            assert_eq!(node.get_auth("/v1/me", access).await.status(), 200);
        }
    }

    cluster.cli(&["user", "lock", EMAIL]).await;
    let changed = Instant::now();
    for node in [&cluster.b, &cluster.a] {
        let (status, body) = within_a_second(changed, "the suspension applies to the key", move || async move {
            refusal(node.authz(key).await).await
        })
        .await;
        assert_eq!((status, body["code"].as_str()), (403, Some("account_locked")), "{body}");
        let (status, body) = within_a_second(changed, "the suspension ends the session", move || async move {
            refusal(node.get_auth("/v1/me", access).await).await
        })
        .await;
        assert!(
            matches!(
                (status, body["code"].as_str().unwrap()),
                (401, "session_expired" | "invalid_token") | (403, "account_locked")
            ),
            "{status} {body}"
        );
        let response = node
            .post("/v1/auth/login", json!({"email": EMAIL, "password": PASSWORD}))
            .await;
        problem(response, 403, "account_locked").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lockout_on_one_instance_is_honoured_by_the_other_within_a_second() {
    let Some(cluster) = Cluster::start(&[("AUTH_LOCKOUT_THRESHOLD", "2")]).await else {
        return;
    };
    cluster.verified_user(EMAIL).await;
    let pair_a = cluster.a.tokens(EMAIL).await;
    let pair_b = cluster.b.tokens(EMAIL).await;
    let (access_a, access_b) = (
        pair_a["access_token"].as_str().unwrap(),
        pair_b["access_token"].as_str().unwrap(),
    );
    // B remembers its caller, unlocked.
    assert_eq!(cluster.b.get_auth("/v1/me", access_b).await.status(), 200);
    let wrong = json!({"current_password": "not my password", "new_password": "a brand new passphrase"});
    for _ in 0..2 {
        let answer = cluster
            .a
            .post_auth("/v1/auth/password/change", access_a, wrong.clone())
            .await;
        problem(answer, 401, "invalid_credentials").await;
    }
    let locked = Instant::now();
    // On B, a password check behind the session finds the account locked
    // (turning off 2FA that is off changes nothing when it succeeds).
    let b = &cluster.b;
    let check = move || async move {
        let answer = b
            .client
            .delete(b.url("/v1/me/mfa/totp"))
            .bearer_auth(access_b)
            .json(&json!({"password": PASSWORD}))
            .send()
            .await
            .unwrap();
        (answer.status() != 204).then_some(answer)
    };
    let answer = within_a_second(locked, "B sees the lockout", check).await;
    problem(answer, 403, "account_locked").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_counted_by_both_instances_adds_up_exactly() {
    let Some(cluster) = Cluster::start(&[]).await else {
        return;
    };
    cluster.verified_user(EMAIL).await;
    let access = cluster.a.tokens(EMAIL).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let created = cluster.a.create_key(&access).await;
    let (id, key) = (created["id"].as_str().unwrap(), created["key"].as_str().unwrap());
    // 40 requests split over both instances: 30 allowed, 10 lacking a scope.
    for i in 0..40 {
        let node = if i % 2 == 0 { &cluster.a } else { &cluster.b };
        let (scope, status) = if i % 4 == 3 {
            ("chat:write", 403)
        } else {
            ("agents:read", 200)
        };
        let response = node.get_auth(&format!("/v1/authz?scope={scope}"), key).await;
        assert_eq!(response.status(), status);
    }
    let path = format!("/v1/api-keys/{id}/usage?granularity=hour");
    let expected = json!({"allowed": 30, "rate_limited": 0, "insufficient_scope": 10});
    let mut totals = Value::Null;
    for _ in 0..100 {
        let usage: Value = cluster.b.get_auth(&path, &access).await.json().await.unwrap();
        totals = usage["totals"].clone();
        if totals == expected {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    assert_eq!(totals, expected, "every request once, from both instances");
    // Later flushes of either instance add nothing.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let usage: Value = cluster.a.get_auth(&path, &access).await.json().await.unwrap();
    assert_eq!(usage["totals"], expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_deleted_on_one_instance_is_refused_by_the_other_within_a_second() {
    let Some(cluster) = Cluster::start(&[]).await else {
        return;
    };
    let owner = cluster.owner_with_key().await;
    let (access, key) = (owner.access.as_str(), owner.key.as_str());

    // B has checked both credentials (and keeps them in its cache).
    for _ in 0..3 {
        assert_eq!(cluster.b.authz(key).await.status(), 200);
        assert_eq!(cluster.b.authz(access).await.status(), 200);
        assert_eq!(cluster.b.get_auth("/v1/me", access).await.status(), 200);
    }

    let response = cluster
        .a
        .client
        .delete(cluster.a.url("/v1/me"))
        .bearer_auth(access)
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let changed = Instant::now();
    let b = &cluster.b;
    let (status, _) = within_a_second(changed, "B refuses the deleted account's key", move || async move {
        refusal(b.authz(key).await).await
    })
    .await;
    assert_eq!(status, 401);
    let (status, _) = within_a_second(changed, "B refuses the deleted account's token", move || async move {
        refusal(b.get_auth("/v1/me", access).await).await
    })
    .await;
    assert_eq!(status, 401);
    for node in [&cluster.a, &cluster.b] {
        assert_eq!(node.authz(key).await.status(), 401, "key on {}", node.name);
        assert_eq!(node.authz(access).await.status(), 401, "token on {}", node.name);
        let response = node
            .post("/v1/auth/refresh", json!({"refresh_token": owner.refresh}))
            .await;
        assert_eq!(response.status(), 401, "refresh on {}", node.name);
    }
}
