//! Secrets at rest: XChaCha20-Poly1305 under the service's secret key.
//!
//! `chacha20poly1305` (RustCrypto, audited by NCC Group) rather than a
//! hand-made construction: a 192-bit random nonce per message means no
//! nonce bookkeeping across instances that share the key file.

use crate::keys::SecretKey;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use convosphere_domain::ports::SecretBox;
use convosphere_domain::InfraError;
use rand::RngCore;

/// Version tag of the sealed format, so that the scheme can change later.
const PREFIX: &str = "v1.";
const NONCE_LEN: usize = 24;

/// Seals and opens secrets with the key of `AUTH_SECRET_KEY_FILE`.
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl Sealer {
    /// A sealer under `key`.
    pub fn new(key: &SecretKey) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(key.expose().into()),
        }
    }
}

impl SecretBox for Sealer {
    fn seal(&self, plaintext: &[u8]) -> Result<String, InfraError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), plaintext)
            .map_err(|_| InfraError::new("sealing a secret failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        Ok(format!("{PREFIX}{}", STANDARD_NO_PAD.encode(out)))
    }

    fn open(&self, sealed: &str) -> Result<Vec<u8>, InfraError> {
        let refused = || InfraError::new("a sealed secret does not open: tampered with, or sealed under another key");
        let bytes = sealed
            .strip_prefix(PREFIX)
            .and_then(|b64| STANDARD_NO_PAD.decode(b64).ok())
            .filter(|bytes| bytes.len() > NONCE_LEN)
            .ok_or_else(refused)?;
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        self.cipher
            .decrypt(XNonce::from_slice(nonce), ciphertext)
            .map_err(|_| refused())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_under_its_key_and_untouched() {
        let sealer = Sealer::new(&SecretKey::generate());
        let sealed = sealer.seal(b"twenty bytes secret!").unwrap();
        assert!(sealed.starts_with("v1."));
        assert!(!sealed.contains("twenty"));
        assert_eq!(sealer.open(&sealed).unwrap(), b"twenty bytes secret!");
        // A fresh nonce each time.
        assert_ne!(sealer.seal(b"twenty bytes secret!").unwrap(), sealed);

        let other = Sealer::new(&SecretKey::generate());
        assert!(other.open(&sealed).is_err());
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(sealer.open(&String::from_utf8(tampered).unwrap()).is_err());
        assert!(sealer.open("v1.").is_err());
        assert!(sealer.open("plain").is_err());
    }
}
