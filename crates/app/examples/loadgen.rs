//! A small load generator for what wrk cannot do:
//!
//! - `refresh` and `login` (closed loop): refresh-token chains, each worker
//!   rotating its own session's token, and logins. Prints requests per
//!   second and latency percentiles.
//! - `passkey` (closed loop): passkey sign-ins (`/v1/auth/passkey/start`,
//!   the software authenticator's signature, `…/finish`), after adding a
//!   passkey to the account; the service's `AUTH_PUBLIC_URL` is `ORIGIN`.
//! - `rate` (open loop, like wrk2): GET requests at a fixed rate spread over
//!   a number of connections; prints the achieved rate and the latency
//!   percentiles. Latencies are corrected for coordinated omission: each
//!   connection replays its requests as a client with an exact clock would
//!   have sent them — request k at its turn, or when the response to k−1
//!   came if that was later — with the service times measured, and a
//!   request's latency runs from its turn. So a slow response delays the
//!   requests queued behind it and they count it, while the lateness of the
//!   load generator's own timer (tokio's is 1 ms coarse) counts for nothing.
//!   Requests go through a minimal HTTP/1.1 client (one prepared request,
//!   `Content-Length` answers), which costs the shared CPU far less than a
//!   general one.
//!
//! ```text
//! cargo run --release --example loadgen -- refresh http://127.0.0.1:8080 ada@example.com PASSWORD 8 10
//! #                                        mode    base URL              e-mail          password workers seconds
//! cargo run --release --example loadgen -- passkey http://127.0.0.1:8080 http://localhost:8080 ada@example.com PASSWORD 8 10
//! #                                        mode    base URL              ORIGIN                e-mail          password workers seconds
//! cargo run --release --example loadgen -- rate http://127.0.0.1:8080/v1/authz 5000 10 32 'Authorization: Bearer cs_…'
//! #                                        mode URL                             req/s secs conns [header…]
//! ```

#![allow(clippy::expect_used, clippy::unwrap_used)]

use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("rate") {
        return rate(&args[2..]).await;
    }
    if args.get(1).map(String::as_str) == Some("passkey") {
        return passkey(&args[2..]).await;
    }
    let [_, mode, base, email, password, workers, seconds] = &args[..] else {
        eprintln!("usage: loadgen refresh|login BASE EMAIL PASSWORD WORKERS SECONDS");
        eprintln!("       loadgen rate URL REQUESTS_PER_SECOND SECONDS CONNECTIONS [HEADER…]");
        std::process::exit(2);
    };
    closed_loop(mode, base, email, password, workers, seconds).await;
}

/// The percentile `p` (0–1) of sorted latencies.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.3}ms", d.as_secs_f64() * 1e3)
}

async fn closed_loop(mode: &str, base: &str, email: &str, password: &str, workers: &str, seconds: &str) {
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
        let (client, base, mode, login) = (client.clone(), base.to_owned(), mode.to_owned(), login.clone());
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
    report(mode, duration, latencies, errors);
}

fn report(mode: &str, duration: Duration, mut latencies: Vec<Duration>, errors: u64) {
    latencies.sort();
    println!(
        "{mode}: {:.1} req/s, {} ok, {errors} errors, p50 {}, p99 {}",
        latencies.len() as f64 / duration.as_secs_f64(),
        latencies.len(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99))
    );
}

async fn post(client: &reqwest::Client, url: String, token: Option<&str>, body: Value) -> Value {
    let mut request = client.post(url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.expect("JSON body")
}

/// The passkey mode: `BASE ORIGIN EMAIL PASSWORD WORKERS SECONDS`. The
/// passkey is a synced one (no signature counter), so that parallel
/// sign-ins need no order.
async fn passkey(args: &[String]) {
    use convosphere_passkey::testing::SoftAuthenticator;
    let [base, origin, email, password, workers, seconds] = args else {
        eprintln!("usage: loadgen passkey BASE ORIGIN EMAIL PASSWORD WORKERS SECONDS");
        std::process::exit(2);
    };
    let workers: usize = workers.parse().expect("WORKERS");
    let duration = Duration::from_secs(seconds.parse().expect("SECONDS"));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(workers)
        .build()
        .expect("client");
    let pair = post(
        &client,
        format!("{base}/v1/auth/login"),
        None,
        json!({"email": email, "password": password}),
    )
    .await;
    let access = pair["access_token"].as_str().expect("access_token");
    let mut authenticator = SoftAuthenticator::new(origin);
    (authenticator.counter_step, authenticator.backed_up) = (0, true);
    let started = post(
        &client,
        format!("{base}/v1/me/passkeys/register/start"),
        Some(access),
        json!({}),
    )
    .await;
    let credential = authenticator
        .register(&started["options"].to_string())
        .expect("register");
    let finish = json!({"challenge_id": started["challenge_id"], "name": "bench",
        "credential": serde_json::from_str::<Value>(&credential).expect("JSON")});
    post(
        &client,
        format!("{base}/v1/me/passkeys/register/finish"),
        Some(access),
        finish,
    )
    .await;
    let authenticator = Arc::new(std::sync::Mutex::new(authenticator));
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (client, base, authenticator) = (client.clone(), base.clone(), Arc::clone(&authenticator));
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0u64);
            while Instant::now() < deadline {
                let begun = Instant::now();
                let started = post(&client, format!("{base}/v1/auth/passkey/start"), None, json!({})).await;
                let answer = authenticator
                    .lock()
                    .expect("lock")
                    .sign_in(&started["options"].to_string());
                let body = json!({"challenge_id": started["challenge_id"],
                    "credential": serde_json::from_str::<Value>(&answer.expect("sign in")).expect("JSON")});
                let response = client
                    .post(format!("{base}/v1/auth/passkey/finish"))
                    .json(&body)
                    .send()
                    .await;
                match response {
                    Ok(response) if response.status().is_success() => {
                        let _ = response.bytes().await;
                        latencies.push(begun.elapsed());
                    }
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for task in tasks {
        let (l, e) = task.await.expect("worker");
        latencies.extend(l);
        errors += e;
    }
    report("passkey sign-in (start + finish)", duration, latencies, errors);
}

/// The open-loop mode: `URL RATE SECONDS CONNECTIONS [HEADER…]`.
async fn rate(args: &[String]) {
    let [url, rate, seconds, connections, headers @ ..] = args else {
        eprintln!("usage: loadgen rate URL REQUESTS_PER_SECOND SECONDS CONNECTIONS [HEADER…]");
        std::process::exit(2);
    };
    let rate: f64 = rate.parse().expect("REQUESTS_PER_SECOND");
    let duration = Duration::from_secs_f64(seconds.parse().expect("SECONDS"));
    let connections: usize = connections.parse().expect("CONNECTIONS");
    assert!(
        rate > 0.0 && connections > 0,
        "the rate and the connections must be positive"
    );
    let target = reqwest::Url::parse(url).expect("URL");
    assert_eq!(target.scheme(), "http", "only http:// URLs");
    let host = target.host_str().expect("URL host").to_owned();
    let port = target.port_or_known_default().expect("URL port");
    let mut request = format!(
        "GET {}{} HTTP/1.1\r\nHost: {host}:{port}\r\n",
        target.path(),
        target.query().map(|q| format!("?{q}")).unwrap_or_default()
    );
    for header in headers {
        let (name, value) = header.split_once(':').expect("HEADER is `Name: value`");
        request.push_str(&format!("{}: {}\r\n", name.trim(), value.trim()));
    }
    request.push_str("\r\n");
    let request: Arc<[u8]> = Arc::from(request.into_bytes());
    // One keep-alive connection each, opened (and used once) before the clock starts.
    let mut streams = Vec::with_capacity(connections);
    for _ in 0..connections {
        let mut stream = Connection::open(&host, port).await;
        assert!(
            stream.get(&request).await.expect("warm-up request"),
            "the warm-up request failed"
        );
        streams.push(stream);
    }
    // Connection `i` sends the requests due at `start + (i + k·connections) / rate`.
    let interval = Duration::from_secs_f64(connections as f64 / rate);
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let end = start + duration;
    let mut tasks = Vec::new();
    for (i, mut stream) in streams.into_iter().enumerate() {
        let request = Arc::clone(&request);
        let first = start + Duration::from_secs_f64(i as f64 / rate);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let (mut errors, mut late) = (0u64, 0u64);
            // When the previous response would have come with an exact clock.
            let mut ideal_done = first;
            let mut due = first;
            while due < end {
                tokio::time::sleep_until(due).await;
                let sent = tokio::time::Instant::now();
                let ok = stream.get(&request).await.unwrap_or(false);
                let service = sent.elapsed();
                if ok {
                    // Queued behind the previous response, or sent at its turn.
                    let ideal_sent = if ideal_done > due {
                        late += 1;
                        ideal_done
                    } else {
                        due
                    };
                    ideal_done = ideal_sent + service;
                    latencies.push(ideal_done - due);
                } else {
                    errors += 1;
                }
                due += interval;
            }
            (latencies, errors, late)
        }));
    }
    let (mut latencies, mut errors, mut late) = (Vec::new(), 0, 0);
    for task in tasks {
        let (l, e, t) = task.await.expect("worker");
        latencies.extend(l);
        errors += e;
        late += t;
    }
    latencies.sort();
    println!(
        "rate: target {rate:.0} req/s, achieved {:.0} req/s, {} ok, {errors} errors, {late} queued behind a slow response, p50 {}, p90 {}, p99 {}, p99.9 {}, max {}",
        latencies.len() as f64 / duration.as_secs_f64(),
        latencies.len(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.9)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 0.999)),
        ms(latencies.last().copied().unwrap_or_default()),
    );
}

/// One HTTP/1.1 keep-alive connection that sends a prepared GET and reads
/// the answer (`Content-Length` bodies only, as actix-web sends for these
/// endpoints): far less work per request than a general client, so that
/// the load generator takes little of the CPU it shares with the service.
struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Connection {
    async fn open(host: &str, port: u16) -> Self {
        let stream = TcpStream::connect((host, port)).await.expect("connect");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        Self {
            stream,
            buffer: Vec::with_capacity(4096),
        }
    }

    /// Sends the request and reads the whole answer; whether it was a 2xx.
    async fn get(&mut self, request: &[u8]) -> std::io::Result<bool> {
        self.stream.write_all(request).await?;
        self.buffer.clear();
        let header_end = loop {
            if let Some(at) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buffer[..header_end]).map_err(std::io::Error::other)?;
        let success = head.get(9..10) == Some("2");
        let length = head
            .lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, value)| value.trim().parse::<usize>().ok())
            .ok_or_else(|| std::io::Error::other("an answer without Content-Length"))?;
        while self.buffer.len() < header_end + length {
            self.fill().await?;
        }
        if self.buffer.len() > header_end + length {
            return Err(std::io::Error::other("more bytes than the answer"));
        }
        Ok(success)
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk).await? {
            0 => Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                self.buffer.extend_from_slice(&chunk[..n]);
                Ok(())
            }
        }
    }
}
