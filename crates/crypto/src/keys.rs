//! Key material: the Ed25519 signing key and the 32-byte secret key, and
//! the files that keep them.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use josekit::jwk::alg::ed::{EdCurve, EdKeyPair};
use josekit::jws::EdDSA;
use rand::RngCore;
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretBox};
use sha2::{Digest, Sha256};
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Bytes of the thumbprint kept in a `kid`: 128 bits tell keys apart.
const KID_BYTES: usize = 16;

/// Why key material could not be loaded, made or used. The message names
/// the file and the problem, never the key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A file could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done (`read`, `write`…).
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The material is not what it should be (not an Ed25519 PKCS#8 key, a
    /// secret of the wrong length, a JWKS without a usable key…).
    #[error("{0}")]
    Invalid(String),
}

impl KeyError {
    fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }

    fn in_file(self, path: &Path) -> Self {
        match self {
            Self::Invalid(reason) => Self::Invalid(format!("{}: {reason}", path.display())),
            io @ Self::Io { .. } => io,
        }
    }
}

/// An Ed25519 private key that signs access tokens. Its `Debug` shows
/// only the public `kid`.
#[derive(Clone)]
pub struct SigningKey {
    key_pair: EdKeyPair,
    key_id: String,
    x: String,
}

impl SigningKey {
    /// A new random key.
    pub fn generate() -> Result<Self, KeyError> {
        let key_pair = EdDSA
            .generate_key_pair(EdCurve::Ed25519)
            .map_err(|e| KeyError::Invalid(format!("cannot generate an Ed25519 key: {e}")))?;
        Self::from_key_pair(key_pair)
    }

    /// Reads a private key in PEM: PKCS#8 (`BEGIN PRIVATE KEY`, what
    /// `openssl genpkey -algorithm ed25519` writes) or the traditional
    /// `BEGIN ED25519 PRIVATE KEY`.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let key_pair = EdDSA
            .key_pair_from_pem(pem)
            .map_err(|_| KeyError::Invalid("not an Ed25519 private key in PKCS#8 PEM".to_owned()))?;
        if key_pair.curve() != EdCurve::Ed25519 {
            return Err(KeyError::Invalid(format!(
                "an {} key; access tokens need Ed25519",
                key_pair.curve()
            )));
        }
        Self::from_key_pair(key_pair)
    }

    fn from_key_pair(key_pair: EdKeyPair) -> Result<Self, KeyError> {
        let x = key_pair
            .to_jwk_public_key()
            .parameter("x")
            .and_then(|x| x.as_str().map(str::to_owned))
            .ok_or_else(|| KeyError::Invalid("the key has no public part".to_owned()))?;
        let key_id = key_id_of(&x);
        Ok(Self { key_pair, key_id, x })
    }

    /// The PKCS#8 PEM of the private key, as the key file holds it.
    pub(crate) fn to_pem(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.key_pair.to_pem_private_key())
    }

    /// The PKCS#8 DER of the private key.
    pub(crate) fn to_der(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.key_pair.to_der_private_key())
    }

    /// The key id: base64url of the first 16 bytes of the RFC 7638 SHA-256
    /// thumbprint of the public key. The same key file gives the same `kid`
    /// on every instance.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public key as a JWK: `kty` OKP, `crv` Ed25519, `x`, `kid`,
    /// `alg` EdDSA, `use` sig.
    pub fn public_jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": self.x,
            "kid": self.key_id,
            "alg": "EdDSA",
            "use": "sig",
        })
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// The RFC 7638 thumbprint of an Ed25519 public key, cut to [`KID_BYTES`].
fn key_id_of(x: &str) -> String {
    // Required members only, in lexicographic order, no whitespace.
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    let digest = Sha256::digest(canonical.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..KID_BYTES])
}

/// 32 random bytes that encrypt secrets at rest (TOTP secrets). Its
/// `Debug` never shows them, and they are zeroed when dropped.
pub struct SecretKey(SecretBox<[u8; SecretKey::LEN]>);

impl SecretKey {
    /// The length of the key in bytes.
    pub const LEN: usize = 32;

    /// A new random key.
    pub fn generate() -> Self {
        Self(SecretBox::init_with_mut(|bytes: &mut [u8; Self::LEN]| {
            rand::rngs::OsRng.fill_bytes(bytes)
        }))
    }

    /// Wraps existing key bytes.
    pub fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        Self(SecretBox::new(Box::new(bytes)))
    }

    /// Reads a key file's content: exactly 32 raw bytes, or (surrounding
    /// whitespace ignored) 64 hex digits or the base64 of 32 bytes, so that
    /// `openssl rand 32`, `openssl rand -hex 32` and `openssl rand -base64 32`
    /// all make usable files.
    pub fn from_file_content(content: &[u8]) -> Result<Self, KeyError> {
        let bytes: Option<Zeroizing<Vec<u8>>> = if content.len() == Self::LEN {
            Some(Zeroizing::new(content.to_vec()))
        } else {
            std::str::from_utf8(content).ok().map(str::trim).and_then(decode_text)
        };
        bytes
            .and_then(|bytes| <[u8; Self::LEN]>::try_from(bytes.as_slice()).ok())
            .map(Self::from_bytes)
            .ok_or_else(|| {
                KeyError::Invalid(format!(
                    "expected 32 raw bytes, 64 hex digits or base64 of 32 bytes; found {} bytes of something else",
                    content.len()
                ))
            })
    }

    /// The key bytes, for a cipher.
    pub fn expose(&self) -> &[u8; Self::LEN] {
        self.0.expose_secret()
    }
}

impl Clone for SecretKey {
    fn clone(&self) -> Self {
        Self::from_bytes(*self.expose())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

fn decode_text(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    if text.len() == 2 * SecretKey::LEN {
        if let Some(bytes) = decode_hex(text) {
            return Some(bytes);
        }
    }
    [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD]
        .into_iter()
        .find_map(|engine| engine.decode(text).ok())
        .map(Zeroizing::new)
}

fn decode_hex(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    let digits = text.as_bytes();
    let mut bytes = Zeroizing::new(Vec::with_capacity(digits.len() / 2));
    for pair in digits.chunks_exact(2) {
        let high = char::from(pair[0]).to_digit(16)?;
        let low = char::from(pair[1]).to_digit(16)?;
        bytes.push(u8::try_from(high * 16 + low).ok()?);
    }
    Some(bytes)
}

/// Reads the Ed25519 signing key from `path` (PKCS#8 PEM), or, when the
/// file does not exist, generates one and writes it there with mode 0600
/// (creating missing folders with mode 0700).
///
/// Instances that start together with the same missing file agree on one
/// key: the file appears whole and at once (written aside, then linked into
/// place without overwriting), and the losers read the winner's key.
pub fn load_or_generate_signing_key(path: impl AsRef<Path>) -> Result<SigningKey, KeyError> {
    let path = path.as_ref();
    let pem = load_or_create(path, || Ok(SigningKey::generate()?.to_pem()))?;
    SigningKey::from_pem(&pem).map_err(|e| e.in_file(path))
}

/// Reads the 32-byte secret key from `path` (see
/// [`SecretKey::from_file_content`]), or, when the file does not exist,
/// generates 32 random bytes and writes them there raw, with mode 0600, as
/// [`load_or_generate_signing_key`] does.
pub fn load_or_generate_secret_key(path: impl AsRef<Path>) -> Result<SecretKey, KeyError> {
    let path = path.as_ref();
    let content = load_or_create(path, || Ok(Zeroizing::new(SecretKey::generate().expose().to_vec())))?;
    SecretKey::from_file_content(&content).map_err(|e| e.in_file(path))
}

/// The file's content, after writing `generate()`'s when it did not exist.
fn load_or_create(
    path: &Path,
    generate: impl FnOnce() -> Result<Zeroizing<Vec<u8>>, KeyError>,
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    match fs::read(path) {
        Ok(content) => return Ok(Zeroizing::new(content)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(KeyError::io("read", path, e)),
    }
    let content = generate()?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_private_dirs(parent).map_err(|e| KeyError::io("create the folder", parent, e))?;
    }
    match write_new(path, &content) {
        Ok(()) => Ok(content),
        // Another process made the file first: its key wins.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => fs::read(path)
            .map(Zeroizing::new)
            .map_err(|e| KeyError::io("read", path, e)),
        Err(e) => Err(KeyError::io("write", path, e)),
    }
}

/// Writes a file that must not exist yet, readable by the owner only, so
/// that no reader ever sees it half written.
fn write_new(path: &Path, content: &[u8]) -> io::Result<()> {
    let mut suffix = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut suffix);
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.{}.tmp", URL_SAFE_NO_PAD.encode(suffix)));
    let written = write_private(&temp, content).and_then(|()| fs::hard_link(&temp, path));
    let _ = fs::remove_file(&temp);
    match written {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists && e.kind() != io::ErrorKind::NotFound => {
            // A file system without hard links: create the file in place.
            write_private(path, content)
        }
        other => other,
    }
}

fn write_private(path: &Path, content: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(content)?;
    file.sync_all()
}

fn create_private_dirs(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kid_is_the_rfc7638_thumbprint_prefix() {
        // RFC 8037 appendix A.3: the thumbprint of its example Ed25519 key.
        let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
        let full = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";
        let expected = &URL_SAFE_NO_PAD.decode(full).unwrap()[..KID_BYTES];
        assert_eq!(key_id_of(x), URL_SAFE_NO_PAD.encode(expected));
    }

    #[test]
    fn secret_key_files_may_be_raw_hex_or_base64() {
        let bytes: [u8; 32] = std::array::from_fn(|i| u8::try_from(i).unwrap() * 7);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        for content in [
            bytes.to_vec(),
            format!("{hex}\n").into_bytes(),
            format!("{}\n", STANDARD.encode(bytes)).into_bytes(),
            URL_SAFE_NO_PAD.encode(bytes).into_bytes(),
        ] {
            assert_eq!(SecretKey::from_file_content(&content).unwrap().expose(), &bytes);
        }
        assert!(SecretKey::from_file_content(b"too short").is_err());
        assert!(SecretKey::from_file_content(&[0; 33]).is_err());
    }

    #[test]
    fn debug_never_shows_key_material() {
        let secret = SecretKey::from_bytes([0xAB; 32]);
        assert_eq!(format!("{secret:?}"), "SecretKey(***)");
        let key = SigningKey::generate().unwrap();
        let text = format!("{key:?}");
        assert!(text.contains(key.key_id()));
        assert!(!text.contains("PRIVATE"));
    }

    #[test]
    fn other_curves_are_refused() {
        let ed448 = EdDSA.generate_key_pair(EdCurve::Ed448).unwrap();
        let err = SigningKey::from_pem(&ed448.to_pem_private_key()).unwrap_err();
        assert!(err.to_string().contains("Ed448"), "{err}");
        assert!(SigningKey::from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").is_err());
    }
}
