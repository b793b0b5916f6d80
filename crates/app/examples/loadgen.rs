//! A small closed-loop load generator for the flows wrk cannot drive:
//! refresh-token chains (each worker rotates its own session's token) and
//! logins. Prints requests per second and latency percentiles.
//!
//! `cargo run --release --example loadgen -- refresh http://127.0.0.1:8080 ada@example.com PASSWORD 8 10`
//! (mode, base URL, e-mail, password, concurrent workers, seconds)

#![allow(clippy::expect_used, clippy::unwrap_used)]

use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, mode, base, email, password, workers, seconds] = &args[..] else {
        eprintln!("usage: loadgen refresh|login BASE EMAIL PASSWORD WORKERS SECONDS");
        std::process::exit(2);
    };
    let workers: usize = workers.parse().expect("WORKERS");
    let duration = Duration::from_secs(seconds.parse().expect("SECONDS"));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(workers)
        .build()
        .expect("client");
    let login = json!({"email": email, "password": password});
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (client, base, mode, login) = (client.clone(), base.clone(), mode.clone(), login.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut refresh_token = String::new();
            if mode == "refresh" {
                let pair: Value = client
                    .post(format!("{base}/v1/auth/login"))
                    .json(&login)
                    .send()
                    .await
                    .expect("login")
                    .json()
                    .await
                    .expect("login body");
                refresh_token = pair["refresh_token"].as_str().expect("refresh_token").to_owned();
            }
            while Instant::now() < deadline {
                let started = Instant::now();
                let request = if mode == "refresh" {
                    client
                        .post(format!("{base}/v1/auth/refresh"))
                        .json(&json!({"refresh_token": refresh_token}))
                } else {
                    client.post(format!("{base}/v1/auth/login")).json(&login)
                };
                match request.send().await {
                    Ok(response) if response.status().is_success() => {
                        if mode == "refresh" {
                            let pair: Value = response.json().await.expect("body");
                            refresh_token = pair["refresh_token"].as_str().expect("refresh_token").to_owned();
                        } else {
                            let _ = response.bytes().await;
                        }
                        latencies.push(started.elapsed());
                    }
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (l, e) = task.await.expect("worker");
        latencies.extend(l);
        errors += e;
    }
    latencies.sort();
    let pct = |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)));
    println!(
        "{mode}: {:.1} req/s, {} ok, {errors} errors, p50 {:?}, p99 {:?}",
        latencies.len() as f64 / duration.as_secs_f64(),
        latencies.len(),
        pct(0.5).copied().unwrap_or_default(),
        pct(0.99).copied().unwrap_or_default()
    );
}
