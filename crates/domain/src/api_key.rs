//! API keys: the key format, its checksum, the stored record and its status.
//!
//! A key is `cs_` + 8 base62 characters (the public id) + `_` + 32 base62
//! characters of secret + 6 base62 characters of CRC32 over everything
//! before them: 50 characters. Its first 11 characters are its `prefix`.
//! Only a SHA-256 of the secret is stored: the secret carries ~190 random
//! bits, so a fast hash is as safe as a slow one and keeps the gateway fast.

use crate::{ScopeSet, UserId};
use chrono::{DateTime, Utc};
use secrecy::zeroize::Zeroizing;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// What every key starts with.
pub const KEY_PREFIX: &str = "cs_";
/// Length of a whole key.
pub const API_KEY_LEN: usize = 50;
/// Length of the public id.
pub const PUBLIC_ID_LEN: usize = 8;
/// Length of the secret part.
pub const SECRET_LEN: usize = 32;
/// Length of the checksum at the end.
const CHECKSUM_LEN: usize = 6;
/// Length of the shown prefix (`cs_` + public id).
pub const PREFIX_LEN: usize = 11;

/// Identifies a stored API key (the `id` of the API).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ApiKeyId(uuid::Uuid);

impl ApiKeyId {
    /// Wraps a UUID from storage.
    pub const fn from_uuid(id: uuid::Uuid) -> Self {
        Self(id)
    }
    /// The UUID inside.
    pub const fn as_uuid(&self) -> uuid::Uuid {
        self.0
    }
    /// A new time-ordered id.
    pub fn generate(now: DateTime<Utc>, rng: &dyn crate::ports::Rng) -> Self {
        Self(crate::ids::new_v7(now, rng))
    }
}

impl fmt::Debug for ApiKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeyId({})", self.0)
    }
}

impl fmt::Display for ApiKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::str::FromStr for ApiKeyId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(Self)
    }
}

fn is_base62(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn checksum(body: &str) -> [u8; CHECKSUM_LEN] {
    let mut n = crc32fast::hash(body.as_bytes());
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

fn random_base62(rng: &dyn crate::ports::Rng, len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        rng.fill_bytes(&mut buf);
        // 248 = 4 × 62: rejecting larger bytes keeps every character equally likely.
        out.extend(
            buf.iter()
                .filter(|b| **b < 248)
                .map(|b| char::from(BASE62[usize::from(*b % 62)])),
        );
    }
    out.truncate(len);
    out
}

/// Why a string is not an API key. Every case is found without storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyFormatError {
    /// Wrong length, prefix, separator or alphabet.
    #[error("this is not an API key")]
    Malformed,
    /// The checksum does not match (a typo or a forgery).
    #[error("the API key's checksum does not match")]
    BadChecksum,
}

/// A presented API key, well-formed and with a valid checksum.
///
/// ```
/// use convosphere_domain::api_key::PresentedApiKey;
/// assert!(PresentedApiKey::parse("cs_notakey").is_err());
/// ```
pub struct PresentedApiKey {
    /// Base62, checked by `parse`. Fixed-size fields: reading a key on
    /// every gateway check allocates nothing.
    public_id: [u8; PUBLIC_ID_LEN],
    /// Zeroed when dropped.
    secret: Zeroizing<[u8; SECRET_LEN]>,
}

impl PresentedApiKey {
    /// Checks format and checksum.
    pub fn parse(key: &str) -> Result<Self, ApiKeyFormatError> {
        if key.len() != API_KEY_LEN || !key.is_ascii() || !key.starts_with(KEY_PREFIX) || key.as_bytes()[11] != b'_' {
            return Err(ApiKeyFormatError::Malformed);
        }
        let (public_id, secret, sum) = (&key[3..11], &key[12..44], &key[44..]);
        if !(is_base62(public_id) && is_base62(secret) && is_base62(sum)) {
            return Err(ApiKeyFormatError::Malformed);
        }
        if checksum(&key[..44]).ct_eq(sum.as_bytes()).unwrap_u8() != 1 {
            return Err(ApiKeyFormatError::BadChecksum);
        }
        let mut presented = Self {
            public_id: [0; PUBLIC_ID_LEN],
            secret: Zeroizing::new([0; SECRET_LEN]),
        };
        presented.public_id.copy_from_slice(public_id.as_bytes());
        presented.secret.copy_from_slice(secret.as_bytes());
        Ok(presented)
    }

    /// The public id (characters 4 to 11), by which the key is looked up.
    pub fn public_id(&self) -> &str {
        // Base62 is ASCII: never the empty fallback.
        std::str::from_utf8(&self.public_id).unwrap_or_default()
    }

    /// Whether the secret matches a stored hash, in constant time.
    pub fn matches(&self, stored: &SecretHash) -> bool {
        SecretHash::of(&self.secret[..]).0.ct_eq(&stored.0).into()
    }
}

impl fmt::Debug for PresentedApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PresentedApiKey(cs_{}_***)", self.public_id())
    }
}

/// The SHA-256 of a key's secret: all that is stored of it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SecretHash(pub [u8; 32]);

impl SecretHash {
    fn of(secret: &[u8]) -> Self {
        Self(Sha256::digest(secret).into())
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(***)")
    }
}

/// A freshly generated key: the text to show once, and what to store.
pub struct GeneratedApiKey {
    /// The whole key, shown to its owner once.
    pub key: SecretString,
    /// The public id.
    pub public_id: String,
    /// The hash of the secret.
    pub secret_hash: SecretHash,
}

impl GeneratedApiKey {
    /// A new random key.
    pub fn generate(rng: &dyn crate::ports::Rng) -> Self {
        let public_id = random_base62(rng, PUBLIC_ID_LEN);
        let secret = random_base62(rng, SECRET_LEN);
        let mut key = format!("cs_{public_id}_{secret}");
        key.extend(checksum(&key).map(char::from));
        Self {
            key: SecretString::from(key),
            secret_hash: SecretHash::of(secret.as_bytes()),
            public_id,
        }
    }
}

impl fmt::Debug for GeneratedApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GeneratedApiKey(cs_{}_***)", self.public_id)
    }
}

/// Whether a key works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum ApiKeyStatus {
    /// Usable.
    Active,
    /// Revoked or rotated away.
    Revoked,
    /// Past its expiry.
    Expired,
}

impl ApiKeyStatus {
    /// As the API writes it.
    pub fn as_str(&self) -> &'static str {
        self.into()
    }
}

/// A stored API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Its id.
    pub id: ApiKeyId,
    /// Its owner.
    pub user_id: UserId,
    /// A name for people, 1–100 characters.
    pub name: String,
    /// The public id (the prefix is `cs_` + this).
    pub public_id: String,
    /// The hash of the secret.
    pub secret_hash: SecretHash,
    /// What it may do.
    pub scopes: ScopeSet,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// Last use (written at most every few seconds).
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked or rotated away.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    /// The first 11 characters of the key (`cs_` + public id).
    pub fn prefix(&self) -> String {
        format!("cs_{}", self.public_id)
    }

    /// The status at `now`.
    pub fn status(&self, now: DateTime<Utc>) -> ApiKeyStatus {
        if self.revoked_at.is_some() {
            ApiKeyStatus::Revoked
        } else if self.expires_at.is_some_and(|at| at <= now) {
            ApiKeyStatus::Expired
        } else {
            ApiKeyStatus::Active
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Rng(AtomicU64);
    impl crate::ports::Rng for Rng {
        fn fill_bytes(&self, dest: &mut [u8]) {
            for byte in dest {
                let n = self.0.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
                *byte = (n >> 56) as u8;
            }
        }
    }

    #[test]
    fn generated_keys_have_the_documented_shape_and_parse() {
        let rng = Rng(AtomicU64::new(7));
        let generated = GeneratedApiKey::generate(&rng);
        let key = generated.key.expose_secret();
        assert_eq!(key.len(), 50);
        assert!(key.starts_with("cs_"));
        assert_eq!(&key[11..12], "_");
        assert!(is_base62(&key[3..11]) && is_base62(&key[12..]));
        let parsed = PresentedApiKey::parse(key).unwrap();
        assert_eq!(parsed.public_id(), generated.public_id);
        assert!(parsed.matches(&generated.secret_hash));
        let other = GeneratedApiKey::generate(&rng);
        assert!(!parsed.matches(&other.secret_hash));
        assert!(!format!("{parsed:?} {generated:?}").contains(&key[12..44]));
    }

    #[test]
    fn a_single_changed_character_fails_the_checksum() {
        let rng = Rng(AtomicU64::new(11));
        let generated = GeneratedApiKey::generate(&rng);
        let key = generated.key.expose_secret().to_owned();
        for index in [3, 20, 43, 49] {
            let mut bytes = key.clone().into_bytes();
            bytes[index] = if bytes[index] == b'a' { b'b' } else { b'a' };
            let changed = String::from_utf8(bytes).unwrap();
            assert_eq!(
                PresentedApiKey::parse(&changed).unwrap_err(),
                ApiKeyFormatError::BadChecksum
            );
        }
    }

    #[test]
    fn malformed_keys_are_refused() {
        for bad in [
            "",
            "cs_",
            "sk_live_abc",
            &"x".repeat(50),
            &format!("cs_abcdefgh-{}", "a".repeat(38)),
        ] {
            assert_eq!(
                PresentedApiKey::parse(bad).unwrap_err(),
                ApiKeyFormatError::Malformed,
                "{bad}"
            );
        }
        let unicode = format!("cs_abcdefgh_{}é", "a".repeat(36));
        assert!(PresentedApiKey::parse(&unicode).is_err());
    }

    #[test]
    fn checksums_are_six_base62_characters() {
        for body in ["", "cs_abc", "anything"] {
            assert!(is_base62(std::str::from_utf8(&checksum(body)).unwrap()));
        }
    }

    /// Property tests: `parse` takes whatever a client sends.
    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn config() -> ProptestConfig {
            ProptestConfig::with_cases(256)
        }

        /// Arbitrary text, key-shaped text (right length and prefix, any
        /// alphabet) and well-formed keys with a random checksum.
        fn presented() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                "cs_[0-9A-Za-z_]{0,60}",
                "cs_[0-9A-Za-z]{8}_[0-9A-Za-z]{38}",
                "cs_\\PC{8}_\\PC{38}",
                proptest::collection::vec(any::<u8>(), 50)
                    .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
            ]
        }

        proptest! {
            #![proptest_config(config())]

            #[test]
            fn parse_never_panics_and_only_accepts_the_documented_shape(key in presented()) {
                if let Ok(parsed) = PresentedApiKey::parse(&key) {
                    prop_assert_eq!(key.len(), API_KEY_LEN);
                    prop_assert!(key.starts_with("cs_") && &key[11..12] == "_");
                    prop_assert!(is_base62(&key[3..11]) && is_base62(&key[12..]));
                    prop_assert_eq!(&checksum(&key[..44])[..], &key.as_bytes()[44..]);
                    prop_assert_eq!(parsed.public_id(), &key[3..11]);
                }
            }

            #[test]
            fn a_generated_key_always_parses_and_matches_its_hash(seed in any::<u64>()) {
                let generated = GeneratedApiKey::generate(&Rng(AtomicU64::new(seed)));
                let key = generated.key.expose_secret();
                prop_assert_eq!(key.len(), API_KEY_LEN);
                let parsed = PresentedApiKey::parse(key);
                prop_assert!(parsed.is_ok(), "{} did not parse", key);
                let parsed = parsed.unwrap();
                prop_assert_eq!(parsed.public_id(), generated.public_id.as_str());
                prop_assert_eq!(&key[..PREFIX_LEN], format!("cs_{}", generated.public_id));
                prop_assert!(parsed.matches(&generated.secret_hash));
            }

            #[test]
            fn any_single_changed_character_is_refused(
                seed in any::<u64>(),
                index in 0..API_KEY_LEN,
                replacement in prop_oneof![
                    proptest::sample::select(BASE62.to_vec()).prop_map(char::from),
                    any::<char>(),
                ],
            ) {
                let generated = GeneratedApiKey::generate(&Rng(AtomicU64::new(seed)));
                let key = generated.key.expose_secret();
                let original = char::from(key.as_bytes()[index]);
                prop_assume!(replacement != original);
                let mut changed = String::with_capacity(key.len() + 4);
                changed.push_str(&key[..index]);
                changed.push(replacement);
                changed.push_str(&key[index + 1..]);
                let outcome = PresentedApiKey::parse(&changed).map(|_| ());
                // CRC32 detects every single-byte change, and six base62
                // digits (62^6 > 2^32) encode it without collisions: a
                // base62 typo in the id, the secret or the checksum is a
                // checksum failure; anything else breaks the format.
                let in_base62_part = (3..11).contains(&index) || index >= 12;
                if in_base62_part && replacement.is_ascii_alphanumeric() {
                    prop_assert_eq!(outcome, Err(ApiKeyFormatError::BadChecksum));
                } else {
                    prop_assert_eq!(outcome, Err(ApiKeyFormatError::Malformed));
                }
            }
        }
    }
}
