//! Secrets at rest: XChaCha20-Poly1305 under the service's secret key.
//!
//! `chacha20poly1305` (RustCrypto, audited by NCC Group) rather than a
//! hand-made construction: a 192-bit random nonce per message means no
//! nonce bookkeeping across instances that share the key file.

use crate::keys::SecretKey;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use convosphere_domain::ports::SecretBox;
use convosphere_domain::InfraError;
use rand::RngCore;

/// Version tag of the sealed format: `v2.` binds the context as associated
/// data. `v1.` (no context) is what earlier versions wrote; it still opens,
/// so that 2FA enrolled before keeps working, and is never written again.
const PREFIX: &str = "v2.";
const LEGACY_PREFIX: &str = "v1.";
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
    fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<String, InfraError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let message = Payload {
            msg: plaintext,
            aad: context,
        };
        let ciphertext = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), message)
            .map_err(|_| InfraError::new("sealing a secret failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        Ok(format!("{PREFIX}{}", STANDARD_NO_PAD.encode(out)))
    }

    fn open(&self, sealed: &str, context: &[u8]) -> Result<Vec<u8>, InfraError> {
        let refused = || {
            InfraError::new(
                "a sealed secret does not open: tampered with, sealed under another key or for another owner",
            )
        };
        let (b64, aad) = match sealed.strip_prefix(PREFIX) {
            Some(b64) => (b64, context),
            None => (sealed.strip_prefix(LEGACY_PREFIX).ok_or_else(refused)?, &b""[..]),
        };
        let bytes = STANDARD_NO_PAD
            .decode(b64)
            .ok()
            .filter(|bytes| bytes.len() > NONCE_LEN)
            .ok_or_else(refused)?;
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        self.cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad })
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
        let sealed = sealer.seal(b"twenty bytes secret!", b"ada").unwrap();
        assert!(sealed.starts_with("v2."));
        assert!(!sealed.contains("twenty"));
        assert_eq!(sealer.open(&sealed, b"ada").unwrap(), b"twenty bytes secret!");
        // Another owner's secret copied over does not open as theirs.
        assert!(sealer.open(&sealed, b"eve").is_err());
        // A fresh nonce each time.
        assert_ne!(sealer.seal(b"twenty bytes secret!", b"ada").unwrap(), sealed);

        let other = Sealer::new(&SecretKey::generate());
        assert!(other.open(&sealed, b"ada").is_err());
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(sealer.open(&String::from_utf8(tampered).unwrap(), b"ada").is_err());
        assert!(sealer.open("v2.", b"ada").is_err());
        assert!(sealer.open("plain", b"ada").is_err());
    }

    #[test]
    fn a_secret_sealed_before_contexts_still_opens() {
        let key = SecretKey::generate();
        let sealer = Sealer::new(&key);
        // What the v1 format wrote: nonce and ciphertext without associated data.
        let nonce = [7u8; NONCE_LEN];
        let ciphertext = XChaCha20Poly1305::new(key.expose().into())
            .encrypt(XNonce::from_slice(&nonce), &b"old secret"[..])
            .unwrap();
        let legacy = format!("v1.{}", STANDARD_NO_PAD.encode([&nonce[..], &ciphertext].concat()));
        assert_eq!(sealer.open(&legacy, b"ada").unwrap(), b"old secret");
        assert!(sealer.open(&legacy.replacen("v1.", "v2.", 1), b"ada").is_err());
    }
}
