//! The soak of `tests/attack/soak.sh`: a mix of logins, refreshes,
//! `/v1/authz` with tokens and keys, and key creation, rotation and
//! revocation; worker N is the account `N@DOMAIN` (EMAIL is `@DOMAIN`, the
//! accounts exist and are verified). Any answer but the expected one is an
//! error; at the end every key written must be listed with its status, and
//! the audit trail must hold one event per login and per key change. Exit
//! code 1 on any error or lost write. (Refresh chains and login throughput
//! are `examples/loadgen.rs`.)
//!
//! `cargo run --release --example soak -- soak http://127.0.0.1:8080 @soak.example PASSWORD 8 300`
//! (mode, base URL, e-mail domain, password, concurrent workers, seconds)

#![allow(clippy::expect_used, clippy::unwrap_used)]

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, mode, base, email, password, workers, seconds] = &args[..] else {
        eprintln!("usage: soak soak BASE @DOMAIN PASSWORD WORKERS SECONDS");
        std::process::exit(2);
    };
    if mode != "soak" {
        eprintln!("usage: soak soak BASE @DOMAIN PASSWORD WORKERS SECONDS");
        std::process::exit(2);
    }
    let workers: usize = workers.parse().expect("WORKERS");
    let duration = Duration::from_secs(seconds.parse().expect("SECONDS"));
    let ok = soak::run(base, email, password, workers, duration).await;
    std::process::exit(if ok { 0 } else { 1 });
}

mod soak {
    use super::*;
    use rand::Rng;
    use reqwest::{Client, Method, StatusCode};
    use std::collections::HashMap;

    /// What the load keeps of one worker's run.
    #[derive(Default)]
    struct Tally {
        requests: BTreeMap<&'static str, Vec<Duration>>,
        errors: Vec<String>,
        error_count: u64,
        logins: u64,
        created: u64,
        rotated: u64,
        revoked: u64,
        /// Every key id written, and whether it must be active.
        keys: HashMap<String, bool>,
    }

    struct Worker {
        client: Client,
        base: String,
        email: String,
        password: String,
        access: String,
        refresh: String,
        /// Active keys: (id, key text).
        active: Vec<(String, String)>,
        tally: Tally,
    }

    const SCOPES: [&str; 2] = ["chat:read", "agents:read"];

    impl Worker {
        /// Sends one request; an answer other than `expected` is an error.
        async fn call(
            &mut self,
            op: &'static str,
            method: Method,
            path: &str,
            credential: Option<&str>,
            body: Option<Value>,
            expected: StatusCode,
        ) -> Option<Value> {
            let mut request = self.client.request(method, format!("{}{path}", self.base));
            if let Some(credential) = credential {
                request = request.bearer_auth(credential);
            }
            if let Some(body) = body {
                request = request.json(&body);
            }
            let started = Instant::now();
            let outcome = request.send().await;
            let outcome = match outcome {
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    (status, text)
                }
                Err(error) => {
                    self.error(format!("{op}: no answer: {error}"));
                    return None;
                }
            };
            self.tally.requests.entry(op).or_default().push(started.elapsed());
            let (status, text) = outcome;
            if status != expected {
                self.error(format!("{op}: {status} (expected {expected}): {text:.300}"));
                return None;
            }
            Some(serde_json::from_str(&text).unwrap_or(Value::Null))
        }

        fn error(&mut self, message: String) {
            self.tally.error_count += 1;
            if self.tally.errors.len() < 10 {
                self.tally.errors.push(format!("{}: {message}", self.email));
            }
        }

        async fn login(&mut self) {
            let body = json!({"email": self.email, "password": self.password});
            if let Some(pair) = self
                .call(
                    "login",
                    Method::POST,
                    "/v1/auth/login",
                    None,
                    Some(body),
                    StatusCode::OK,
                )
                .await
            {
                self.tally.logins += 1;
                self.take_tokens(&pair);
            }
        }

        fn take_tokens(&mut self, pair: &Value) {
            self.access = pair["access_token"].as_str().unwrap_or_default().to_owned();
            self.refresh = pair["refresh_token"].as_str().unwrap_or_default().to_owned();
        }

        async fn refresh(&mut self) {
            let body = json!({"refresh_token": self.refresh});
            if let Some(pair) = self
                .call(
                    "refresh",
                    Method::POST,
                    "/v1/auth/refresh",
                    None,
                    Some(body),
                    StatusCode::OK,
                )
                .await
            {
                self.take_tokens(&pair);
            }
        }

        async fn create_key(&mut self) {
            let access = self.access.clone();
            let body = json!({"name": "soak", "scopes": SCOPES});
            if let Some(key) = self
                .call(
                    "key_create",
                    Method::POST,
                    "/v1/api-keys",
                    Some(&access),
                    Some(body),
                    StatusCode::CREATED,
                )
                .await
            {
                self.keep_key(&key);
                self.tally.created += 1;
            }
        }

        fn keep_key(&mut self, key: &Value) {
            let id = key["id"].as_str().unwrap_or_default().to_owned();
            self.tally.keys.insert(id.clone(), true);
            self.active
                .push((id, key["key"].as_str().unwrap_or_default().to_owned()));
        }

        /// Takes an active key out (keeping at least one), revoked or rotated away.
        fn retire_key(&mut self) -> Option<(String, String)> {
            if self.active.len() < 2 {
                return None;
            }
            let index = rand::thread_rng().gen_range(0..self.active.len());
            Some(self.active.swap_remove(index))
        }

        /// A retired key must be refused at once.
        async fn expect_revoked(&mut self, key: &str) {
            if let Some(body) = self
                .call(
                    "authz_retired_key",
                    Method::GET,
                    "/v1/authz?scope=chat:read",
                    Some(key),
                    None,
                    StatusCode::UNAUTHORIZED,
                )
                .await
            {
                if body["code"] != "api_key_revoked" {
                    self.error(format!("a retired key answered {body}"));
                }
            }
        }

        async fn revoke_key(&mut self) {
            let Some((id, key)) = self.retire_key() else { return };
            let access = self.access.clone();
            let path = format!("/v1/api-keys/{id}");
            if self
                .call(
                    "key_revoke",
                    Method::DELETE,
                    &path,
                    Some(&access),
                    None,
                    StatusCode::NO_CONTENT,
                )
                .await
                .is_some()
            {
                self.tally.keys.insert(id, false);
                self.tally.revoked += 1;
                self.expect_revoked(&key).await;
            }
        }

        async fn rotate_key(&mut self) {
            let Some((id, key)) = self.retire_key() else { return };
            let access = self.access.clone();
            let path = format!("/v1/api-keys/{id}/rotate");
            if let Some(new) = self
                .call(
                    "key_rotate",
                    Method::POST,
                    &path,
                    Some(&access),
                    None,
                    StatusCode::CREATED,
                )
                .await
            {
                self.tally.keys.insert(id, false);
                self.tally.rotated += 1;
                self.keep_key(&new);
                self.expect_revoked(&key).await;
            }
        }

        async fn authz_key(&mut self, scope: &str, expected: StatusCode) {
            let index = rand::thread_rng().gen_range(0..self.active.len().max(1));
            let Some((_, key)) = self.active.get(index).cloned() else {
                return;
            };
            let op = if expected == StatusCode::OK {
                "authz_key"
            } else {
                "authz_key_denied"
            };
            let path = format!("/v1/authz?scope={scope}");
            self.call(op, Method::GET, &path, Some(&key), None, expected).await;
        }

        async fn step(&mut self) {
            let access = self.access.clone();
            let pick = rand::thread_rng().gen_range(0..40);
            match pick {
                0..=9 => {
                    self.call(
                        "authz_token",
                        Method::GET,
                        "/v1/authz?scope=chat:write",
                        Some(&access),
                        None,
                        StatusCode::OK,
                    )
                    .await;
                }
                10..=19 => self.authz_key("chat:read", StatusCode::OK).await,
                20..=21 => self.authz_key("webhooks:write", StatusCode::FORBIDDEN).await,
                22..=24 => {
                    self.call("me", Method::GET, "/v1/me", Some(&access), None, StatusCode::OK)
                        .await;
                }
                25..=30 => self.refresh().await,
                31..=32 => self.login().await,
                33..=35 => self.create_key().await,
                36..=37 => self.revoke_key().await,
                _ => self.rotate_key().await,
            }
        }

        /// Every key written is listed with its status; the audit trail has
        /// one event per login and key change.
        async fn verify(&mut self) -> String {
            let access = self.access.clone();
            let listed = self
                .call(
                    "verify_keys",
                    Method::GET,
                    "/v1/api-keys",
                    Some(&access),
                    None,
                    StatusCode::OK,
                )
                .await
                .unwrap_or(Value::Null);
            let listed: HashMap<String, String> = listed["api_keys"]
                .as_array()
                .map(|keys| {
                    keys.iter()
                        .map(|k| {
                            (
                                k["id"].as_str().unwrap_or_default().to_owned(),
                                k["status"].as_str().unwrap_or_default().to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let keys = std::mem::take(&mut self.tally.keys);
            for (id, active) in &keys {
                let want = if *active { "active" } else { "revoked" };
                match listed.get(id) {
                    Some(status) if status == want => {}
                    other => self.error(format!("lost write: key {id} should be {want}, is {other:?}")),
                }
            }
            if listed.len() != keys.len() {
                self.error(format!("{} keys listed, {} written", listed.len(), keys.len()));
            }
            let mut counts: HashMap<String, u64> = HashMap::new();
            let mut before: Option<String> = None;
            loop {
                let path = match &before {
                    Some(cursor) => format!("/v1/me/events?limit=100&before={cursor}"),
                    None => "/v1/me/events?limit=100".to_owned(),
                };
                let Some(page) = self
                    .call("verify_events", Method::GET, &path, Some(&access), None, StatusCode::OK)
                    .await
                else {
                    break;
                };
                for event in page["events"].as_array().into_iter().flatten() {
                    *counts
                        .entry(event["type"].as_str().unwrap_or_default().to_owned())
                        .or_default() += 1;
                }
                match page["next"].as_str() {
                    Some(next) => before = Some(next.to_owned()),
                    None => break,
                }
            }
            let tally = &self.tally;
            let expected = [
                ("login_succeeded", tally.logins),
                ("api_key_created", tally.created),
                ("api_key_revoked", tally.revoked),
                ("api_key_rotated", tally.rotated),
            ];
            let mut report = Vec::new();
            let mut mismatches = Vec::new();
            for (kind, want) in expected {
                let got = counts.get(kind).copied().unwrap_or(0);
                report.push(format!("{kind} {got}/{want}"));
                if got != want {
                    mismatches.push(format!("lost write: {got} {kind} events for {want} successes"));
                }
            }
            for mismatch in mismatches {
                self.error(mismatch);
            }
            self.tally.keys = keys;
            report.join(", ")
        }
    }

    pub async fn run(base: &str, domain: &str, password: &str, workers: usize, duration: Duration) -> bool {
        let client = Client::builder()
            .pool_max_idle_per_host(workers)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let started = Instant::now();
        let deadline = started + duration;
        let mut tasks = Vec::new();
        for n in 0..workers {
            let mut worker = Worker {
                client: client.clone(),
                base: base.to_owned(),
                email: format!("{n}{domain}"),
                password: password.to_owned(),
                access: String::new(),
                refresh: String::new(),
                active: Vec::new(),
                tally: Tally::default(),
            };
            tasks.push(tokio::spawn(async move {
                worker.login().await;
                worker.create_key().await;
                while Instant::now() < deadline {
                    worker.step().await;
                }
                let audit = worker.verify().await;
                (worker.email.clone(), audit, worker.tally)
            }));
        }
        let mut all: BTreeMap<&'static str, Vec<Duration>> = BTreeMap::new();
        let mut errors = Vec::new();
        let (mut error_count, mut keys, mut logins) = (0, 0, 0);
        let mut audits = Vec::new();
        for task in tasks {
            let (email, audit, tally) = task.await.expect("worker");
            for (op, latencies) in tally.requests {
                all.entry(op).or_default().extend(latencies);
            }
            errors.extend(tally.errors);
            error_count += tally.error_count;
            keys += tally.keys.len();
            logins += tally.logins;
            audits.push(format!("  {email}: {audit}"));
        }
        let elapsed = duration.as_secs_f64();
        let total: usize = all.values().map(Vec::len).sum();
        println!(
            "soak: {:.0} s, {workers} workers, {total} requests ({:.0}/s), {error_count} errors",
            elapsed,
            total as f64 / elapsed
        );
        for (op, latencies) in &mut all {
            latencies.sort();
            let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
            println!(
                "  {op:18} {:>8} p50 {:>9.2?} p99 {:>9.2?}",
                latencies.len(),
                pct(0.5),
                pct(0.99)
            );
        }
        println!("verified: {keys} keys listed with their status, {logins} logins; audit trail (events/successes):");
        for audit in audits {
            println!("{audit}");
        }
        for error in &errors {
            println!("  error: {error}");
        }
        println!("took {:.0} s in all", started.elapsed().as_secs_f64());
        error_count == 0
    }
}
