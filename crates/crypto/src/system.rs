//! The operating system's clock and randomness.

use chrono::{DateTime, Utc};
use convosphere_domain::ports::{Clock, Rng};
use rand::RngCore;

/// The system clock, in UTC.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The operating system's CSPRNG (`getrandom`), through `rand::rngs::OsRng`.
/// It holds no state, so it needs no reseeding and is safe across `fork`.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsRng;

impl Rng for OsRng {
    fn fill_bytes(&self, dest: &mut [u8]) {
        rand::rngs::OsRng.fill_bytes(dest);
    }
}
