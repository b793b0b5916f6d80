//! The mail adapter against a real SMTP server (mailin-embedded, in this
//! process) and a real outbox directory. One test binary, modules inside.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod config;
mod outbox;
mod retry;
mod server;
mod smtp;
mod support;
mod tls;
