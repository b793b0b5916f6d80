#![doc = include_str!("../README.md")]

mod jwt;
mod keys;
#[cfg(feature = "password")]
mod password;
mod seal;
mod system;

pub use jwt::{JwtSigner, JwtVerifier, ALGORITHM, AUDIENCE, CLIENT_ID, TOKEN_TYPE};
pub use keys::{load_or_generate_secret_key, load_or_generate_signing_key, KeyError, SecretKey, SigningKey};
#[cfg(feature = "password")]
pub use password::{
    Argon2Hasher, HasherError, MAX_VERIFY_M_COST, OUTPUT_LEN, OWASP_M_COST, OWASP_P_COST, OWASP_T_COST, SALT_LEN,
};
pub use seal::Sealer;
pub use system::{OsRng, SystemClock};

/// Re-exported so that callers can build [`Argon2Hasher`] parameters
/// without naming the `argon2` crate themselves.
#[cfg(feature = "password")]
pub use argon2::Params as Argon2Params;

/// Whether two byte strings are equal, in time that depends on their
/// lengths only, never on where they differ (for comparing secrets and
/// their hashes). Strings of different lengths are unequal.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn constant_time_eq_compares_bytes_and_lengths() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret "));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
