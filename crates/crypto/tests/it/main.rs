//! The crypto adapter against the real argon2, josekit and file system.
//! One test binary for the crate: add modules here, not files in tests/.

// Test helpers outside `#[test]` functions may panic too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod jwt;
mod keys;
#[cfg(feature = "password")]
mod password;
mod system;
