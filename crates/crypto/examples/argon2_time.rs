//! Prints the mean time in milliseconds of one argon2id hash at the OWASP
//! parameters on one core (the login benchmark's bound is cores / this).
//!
//! `cargo run --release -p convosphere-crypto --example argon2_time -- 20`

#![allow(clippy::expect_used)]

use convosphere_crypto::Argon2Hasher;
use convosphere_domain::ports::PasswordHasher;
use convosphere_domain::Password;
use std::time::Instant;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let runs: u32 = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(20);
    let hasher = Argon2Hasher::owasp().expect("OWASP parameters");
    let password = Password::candidate("correct horse battery staple");
    let hash = hasher.hash(&password).await.expect("hash"); // warm-up, allocates the buffer
    let started = Instant::now();
    for _ in 0..runs {
        assert!(hasher.verify(&password, Some(&hash)).await.expect("verify"));
    }
    println!("{:.2}", started.elapsed().as_secs_f64() * 1e3 / f64::from(runs));
}
