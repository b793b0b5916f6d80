//! What a login and an authenticated request cost in this crate:
//! argon2id at OWASP parameters (pooled memory against the plain argon2 API
//! that allocates per call), and signing and verifying an access token.
//!
//! `cargo bench -p convosphere-crypto` (add `-- --quick` for a rough run).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use argon2::password_hash::{PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Block, Version};
use chrono::{TimeDelta, Utc};
use convosphere_crypto::{Argon2Hasher, JwtSigner, JwtVerifier, SigningKey};
use convosphere_domain::ports::{AccessClaims, PasswordHasher, TokenSigner};
use convosphere_domain::{Password, Plan, SessionId, UserId};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use uuid::Uuid;

fn argon2id(c: &mut Criterion) {
    let params = Argon2Hasher::owasp_params().unwrap();
    let mut group = c.benchmark_group("argon2id_owasp");
    group.sample_size(20);

    // The adapter as the app calls it: semaphore, blocking pool, pooled memory.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let hasher = Argon2Hasher::with_max_in_flight(params.clone(), 1).unwrap();
    let password = Password::candidate("correct horse battery staple");
    group.bench_function("Argon2Hasher::hash (pooled memory)", |b| {
        b.iter(|| runtime.block_on(hasher.hash(black_box(&password))).unwrap())
    });

    // The argon2 core alone, with and without a reused buffer.
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let salt = [7u8; 16];
    let mut memory = vec![Block::default(); params.block_count()];
    group.bench_function("hash_password_into_with_memory (reused buffer)", |b| {
        b.iter(|| {
            let mut out = [0u8; 32];
            argon2
                .hash_password_into_with_memory(
                    black_box(b"correct horse battery staple"),
                    &salt,
                    &mut out,
                    &mut memory,
                )
                .unwrap();
            out
        })
    });
    let salt_string = SaltString::encode_b64(&salt).unwrap();
    group.bench_function("hash_password (allocates per call)", |b| {
        b.iter(|| {
            argon2
                .hash_password(black_box(b"correct horse battery staple"), &salt_string)
                .unwrap()
                .to_string()
        })
    });
    // What the pool saves on each hash: a fresh, zeroed 19 MiB matrix.
    group.bench_function("allocate and zero the matrix alone", |b| {
        b.iter(|| black_box(vec![Block::default(); params.block_count()]))
    });
    group.finish();
}

fn jwt(c: &mut Criterion) {
    let issuer = "https://auth.convosphere.example";
    let signer = JwtSigner::new(&SigningKey::generate().unwrap(), issuer).unwrap();
    let now = Utc::now();
    let claims = AccessClaims {
        user_id: UserId::from_uuid(Uuid::from_u128(1)),
        session_id: SessionId::from_uuid(Uuid::from_u128(2)),
        plan: Plan::Business,
        issued_at: now,
        expires_at: now + TimeDelta::minutes(15),
        token_id: Uuid::from_u128(3),
        auth_time: now,
        amr: vec![convosphere_domain::AuthMethod::Password],
    };
    let token = signer.sign(&claims).unwrap();
    let verifier = JwtVerifier::from_jwks(&signer.jwks(), issuer).unwrap();

    let mut group = c.benchmark_group("jwt");
    group.bench_function("sign", |b| b.iter(|| signer.sign(black_box(&claims)).unwrap()));
    group.bench_function("verify", |b| {
        b.iter(|| verifier.verify(black_box(&token), now).unwrap())
    });
    group.finish();
}

criterion_group!(benches, argon2id, jwt);
criterion_main!(benches);
