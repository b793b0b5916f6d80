//! TOTP two-factor authentication (RFC 6238: HMAC-SHA-1, 6 digits, 30 s
//! steps, one step of drift either way) and single-use recovery codes.
//!
//! The code arithmetic is pure, so it lives here; the secret is kept
//! encrypted at rest by the [`SecretBox`](crate::ports::SecretBox) port.

use crate::ports::Rng;
use crate::token::TokenHash;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretSlice};
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

/// Length of a TOTP step in seconds.
pub const STEP_SECONDS: i64 = 30;
/// Steps accepted on either side of the current one (clock drift).
pub const DRIFT_STEPS: i64 = 1;
/// How many recovery codes confirming 2FA hands out.
pub const RECOVERY_CODES: usize = 10;

/// A TOTP shared secret: 160 random bits (RFC 4226's recommended size).
/// `Debug` never shows it.
pub struct TotpSecret(SecretSlice<u8>);

impl TotpSecret {
    /// A fresh secret from the port.
    pub fn generate(rng: &dyn Rng) -> Self {
        let mut bytes = vec![0u8; 20];
        rng.fill_bytes(&mut bytes);
        Self(SecretSlice::from(bytes))
    }

    /// Wraps secret bytes (decrypted from storage).
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(SecretSlice::from(bytes))
    }

    /// The raw bytes, to encrypt for storage.
    pub fn expose_bytes(&self) -> &[u8] {
        self.0.expose_secret()
    }

    /// Base32 without padding, as authenticator apps take it.
    pub fn to_base32(&self) -> String {
        data_encoding::BASE32_NOPAD.encode(self.expose_bytes())
    }

    /// The `otpauth://totp/` URI that authenticator apps scan as a QR code.
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> String {
        let label = format!("{issuer}:{account}");
        format!(
            "otpauth://totp/{}?secret={}&issuer={}&algorithm=SHA1&digits=6&period={STEP_SECONDS}",
            percent_encode(&label),
            self.to_base32(),
            percent_encode(issuer)
        )
    }

    /// The 6-digit code of one time step.
    pub fn code_at_step(&self, step: i64) -> u32 {
        // A key of any length is valid for HMAC, so this cannot fail.
        let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(self.expose_bytes()) else {
            return u32::MAX;
        };
        mac.update(&step.to_be_bytes());
        let digest = mac.finalize().into_bytes();
        let offset = usize::from(digest[19] & 0x0f);
        let binary = u32::from_be_bytes([
            digest[offset],
            digest[offset + 1],
            digest[offset + 2],
            digest[offset + 3],
        ]) & 0x7fff_ffff;
        binary % 1_000_000
    }

    /// The step a code typed at `now` matches, if any (the current one or
    /// one either side). Every candidate is compared, in constant time.
    pub fn matching_step(&self, code: &str, now: DateTime<Utc>) -> Option<i64> {
        let code = code.trim().replace(' ', "");
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let current = step_of(now);
        let mut found = None;
        for step in current - DRIFT_STEPS..=current + DRIFT_STEPS {
            let expected = format!("{:06}", self.code_at_step(step));
            if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) && found.is_none() {
                found = Some(step);
            }
        }
        found
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(***)")
    }
}

/// The TOTP step of a time.
pub fn step_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(STEP_SECONDS)
}

fn percent_encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// A recovery code as shown to its owner once: `xxxxxx-xxxxxx-xxxxxx-xxxxxx`,
/// 120 random bits in lower-case base32 (no 0/1/8/9 to misread). Only its
/// SHA-256 is stored: at 112 bits and more a plain hash is as safe as a slow
/// one (OWASP ASVS 5.0, 6.5.2), and it keeps single use one atomic update.
pub struct RecoveryCode(String);

impl RecoveryCode {
    /// Characters of a code, not counting the dashes: 24 × 5 bits = 120 bits.
    const LENGTH: usize = 24;
    /// Characters between two dashes.
    const GROUP: usize = 6;

    /// A fresh code.
    pub fn generate(rng: &dyn Rng) -> Self {
        const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
        let mut bytes = [0u8; Self::LENGTH];
        rng.fill_bytes(&mut bytes);
        let mut code = String::with_capacity(Self::LENGTH + Self::LENGTH / Self::GROUP);
        for (i, b) in bytes.iter().enumerate() {
            if i > 0 && i % Self::GROUP == 0 {
                code.push('-');
            }
            // 256 is a multiple of 32: the low five bits are uniform.
            code.push(char::from(ALPHABET[usize::from(b & 31)]));
        }
        Self(code)
    }

    /// The code, to show once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The stored hash of a code as typed: case, spaces and the dash do not matter.
    pub fn hash_of(typed: &str) -> TokenHash {
        let normalized: String = typed
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        TokenHash(Sha256::digest(normalized.as_bytes()).into())
    }

    /// The hash of this code.
    pub fn hash(&self) -> TokenHash {
        Self::hash_of(&self.0)
    }
}

impl fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCode(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// RFC 6238 appendix B's SHA-1 secret.
    fn rfc_secret() -> TotpSecret {
        TotpSecret::from_bytes(b"12345678901234567890".to_vec())
    }

    #[test]
    fn codes_match_the_rfc_6238_test_vectors() {
        // (time, 8-digit code) from RFC 6238 B; 6 digits are its last six.
        for (time, code) in [
            (59, 94_287_082u32),
            (1_111_111_109, 7_081_804),
            (1_111_111_111, 14_050_471),
            (1_234_567_890, 89_005_924),
            (2_000_000_000, 69_279_037),
        ] {
            let at = Utc.timestamp_opt(time, 0).unwrap();
            assert_eq!(rfc_secret().code_at_step(step_of(at)), code % 1_000_000, "at {time}");
        }
    }

    #[test]
    fn a_code_matches_its_step_and_one_either_side_only() {
        let secret = rfc_secret();
        let now = Utc.timestamp_opt(1_234_567_890, 0).unwrap();
        let step = step_of(now);
        for (offset, accepted) in [(-2, false), (-1, true), (0, true), (1, true), (2, false)] {
            let code = format!("{:06}", secret.code_at_step(step + offset));
            assert_eq!(secret.matching_step(&code, now).is_some(), accepted, "offset {offset}");
        }
        let code = format!("{:06}", secret.code_at_step(step));
        assert_eq!(secret.matching_step(&code, now), Some(step));
        assert_eq!(
            secret.matching_step(&format!(" {} {}", &code[..3], &code[3..]), now),
            Some(step)
        );
    }

    #[test]
    fn malformed_codes_match_nothing() {
        let now = Utc.timestamp_opt(1_234_567_890, 0).unwrap();
        for code in ["", "12345", "1234567", "abcdef", "12345a", "-12345"] {
            assert_eq!(rfc_secret().matching_step(code, now), None, "{code:?}");
        }
    }

    #[test]
    fn the_otpauth_uri_names_issuer_account_and_secret() {
        let uri = rfc_secret().otpauth_uri("Convosphere AI", "ada@example.com");
        assert_eq!(
            uri,
            "otpauth://totp/Convosphere%20AI%3Aada%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=Convosphere%20AI&algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn secrets_and_codes_do_not_print() {
        assert_eq!(format!("{:?}", rfc_secret()), "TotpSecret(***)");
        let code = RecoveryCode("abcde-fghij".into());
        assert_eq!(format!("{code:?}"), "RecoveryCode(***)");
    }

    #[test]
    fn recovery_codes_hash_the_same_however_typed() {
        let code = RecoveryCode("abcdef-ghijkl-mnopqr-stuvwx".into());
        assert!(RecoveryCode::hash_of(" ABCDEF ghijkl MNOPQR-stuvwx ") == code.hash());
        assert!(RecoveryCode::hash_of("abcdefghijklmnopqrstuvwy") != code.hash());
    }

    /// Hands out the bytes it was given, then zeros.
    struct ScriptedRng(std::sync::Mutex<Vec<u8>>);

    impl Rng for ScriptedRng {
        fn fill_bytes(&self, buf: &mut [u8]) {
            let mut script = self.0.lock().unwrap();
            for b in buf.iter_mut() {
                *b = if script.is_empty() { 0 } else { script.remove(0) };
            }
        }
    }

    #[test]
    fn a_recovery_code_carries_120_bits_in_four_groups_of_six() {
        // Every byte's low five bits pick a letter; the high three are dropped.
        let bytes: Vec<u8> = (0..24u8).map(|i| i + 32 * (i % 8)).collect();
        let code = RecoveryCode::generate(&ScriptedRng(std::sync::Mutex::new(bytes)));
        assert_eq!(code.expose(), "abcdef-ghijkl-mnopqr-stuvwx");
        let code = RecoveryCode::generate(&ScriptedRng(std::sync::Mutex::new(vec![31; 24])));
        assert_eq!(code.expose(), "777777-777777-777777-777777");
        assert_eq!(
            code.expose().chars().filter(char::is_ascii_alphanumeric).count() * 5,
            120
        );
    }

    /// Property tests: codes are typed by people and sent by anyone.
    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn any_time() -> impl Strategy<Value = DateTime<Utc>> {
            prop_oneof![
                (DateTime::<Utc>::MIN_UTC.timestamp()..=DateTime::<Utc>::MAX_UTC.timestamp()),
                (0i64..4_102_444_800),
            ]
            .prop_map(|secs| Utc.timestamp_opt(secs, 0).unwrap())
        }

        fn typed_code() -> impl Strategy<Value = String> {
            prop_oneof![any::<String>(), "[0-9]{6}", "[ 0-9]{0,12}", "[0-9\\p{Nd}\\s]{4,8}",]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn matching_never_panics_and_accepts_only_a_code_of_the_window(
                secret in proptest::collection::vec(any::<u8>(), 0..64),
                code in typed_code(),
                now in any_time(),
            ) {
                let secret = TotpSecret::from_bytes(secret);
                if let Some(step) = secret.matching_step(&code, now) {
                    prop_assert!((step - step_of(now)).abs() <= DRIFT_STEPS);
                    let digits: String = code.chars().filter(|c| *c != ' ').collect();
                    prop_assert_eq!(digits.trim(), format!("{:06}", secret.code_at_step(step)));
                }
            }

            #[test]
            fn the_code_of_now_always_matches(secret in proptest::collection::vec(any::<u8>(), 1..64), now in any_time()) {
                let secret = TotpSecret::from_bytes(secret);
                let code = format!("{:06}", secret.code_at_step(step_of(now)));
                prop_assert!(secret.code_at_step(step_of(now)) < 1_000_000);
                prop_assert!(secret.matching_step(&code, now).is_some());
            }

            #[test]
            fn recovery_codes_hash_without_panics_and_ignore_case_and_separators(typed in any::<String>()) {
                let hash = RecoveryCode::hash_of(&typed);
                let noisy: String = typed.chars().flat_map(|c| [c.to_ascii_uppercase(), '-']).collect();
                prop_assert!(RecoveryCode::hash_of(&noisy) == hash);
            }
        }
    }
}
