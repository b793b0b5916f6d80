//! Opaque secrets (refresh tokens, e-mail links) and their stored hashes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use std::fmt;

/// A random secret of 256 bits, base64url-encoded (43 characters).
/// Only its [`TokenHash`] is ever stored; its `Debug` never shows it.
pub struct OpaqueToken(SecretString);

impl OpaqueToken {
    /// 256 fresh random bits from the port.
    pub fn generate(rng: &dyn crate::ports::Rng) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        Self(SecretString::from(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Wraps a token a client presented.
    pub fn presented(token: &str) -> Self {
        Self(SecretString::from(token.to_owned()))
    }

    /// The token text, to hand to its owner once.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The SHA-256 of the token: what storage keeps and looks up.
    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.expose().as_bytes()).into())
    }
}

impl fmt::Debug for OpaqueToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OpaqueToken(***)")
    }
}

/// The SHA-256 of an [`OpaqueToken`].
///
/// Lookups go by this hash, so a guessed token costs an index miss and
/// no secret is ever compared byte by byte.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    /// Lower-case hex, as stored.
    pub fn to_hex(&self) -> String {
        use fmt::Write;
        self.0.iter().fold(String::with_capacity(64), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({}…)", &self.to_hex()[..8])
    }
}

/// What a one-time e-mailed token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum TokenKind {
    /// Proves the e-mail address.
    EmailVerification,
    /// Sets a new password.
    PasswordReset,
}

impl TokenKind {
    /// The kind as stored.
    pub fn as_str(&self) -> &'static str {
        self.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter(std::sync::atomic::AtomicU8);
    impl crate::ports::Rng for Counter {
        fn fill_bytes(&self, dest: &mut [u8]) {
            for byte in dest {
                *byte = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    #[test]
    fn tokens_carry_256_bits_and_hash_stably() {
        let rng = Counter(0.into());
        let token = OpaqueToken::generate(&rng);
        assert_eq!(token.expose().len(), 43);
        assert_eq!(token.hash(), OpaqueToken::presented(token.expose()).hash());
        assert_ne!(token.hash(), OpaqueToken::generate(&rng).hash());
        assert_eq!(token.hash().to_hex().len(), 64);
        assert!(!format!("{token:?}").contains(token.expose()));
    }
}
