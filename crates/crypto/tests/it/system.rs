use chrono::Utc;
use convosphere_crypto::{constant_time_eq, OsRng, SystemClock};
use convosphere_domain::ports::{Clock, Rng};

#[test]
fn the_system_clock_tells_the_time() {
    let before = Utc::now();
    let now = SystemClock.now();
    assert!(before <= now && now <= Utc::now());
}

#[test]
fn os_randomness_fills_buffers_differently() {
    let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
    OsRng.fill_bytes(&mut a);
    OsRng.fill_bytes(&mut b);
    assert_ne!(a, b);
    assert_ne!(a, [0; 32]);
}

#[test]
fn constant_time_eq_is_plain_equality() {
    assert!(constant_time_eq(b"token-hash", b"token-hash"));
    assert!(!constant_time_eq(b"token-hash", b"token-hasH"));
    assert!(!constant_time_eq(b"token-hash", b"token-has"));
}
