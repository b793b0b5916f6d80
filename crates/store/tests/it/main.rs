//! Integration tests of the store: one suite, run against SQLite (a temporary
//! file per test) and PostgreSQL (a database per test, when
//! `TEST_DATABASE_URL` names a server).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod support;

mod api_keys;
mod connect;
mod invalidations;
mod mfa_events;
mod oauth;
mod passkeys;
mod sessions;
mod tokens;
mod usage;
mod users;
