//! Black-box tests of the HTTP API and the binary: one test binary, modules inside.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod harness;
mod accounts;
mod browser;
mod cli;
mod cluster;
mod gateway;
mod hardening;
mod keys;
mod lifecycle;
mod mfa;
mod oauth;
mod passkeys;
mod races;
mod service;
mod sessions;
mod usage;
mod web;
