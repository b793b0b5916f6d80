//! Passwords: the policy for new ones, and the hash that is stored.

use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use unicode_normalization::UnicodeNormalization;

/// The fewest code points a new password may have.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// The most code points a new password may have.
pub const MAX_PASSWORD_CHARS: usize = 128;

/// A password in NFKC normal form. Its `Debug` never shows it.
///
/// Passwords are taken as given (no trimming, no truncation), then
/// NFKC-normalized so that the same password typed on two keyboards matches.
/// A new password is checked against the policy by
/// [`new_for`](Self::new_for) (feature `password-strength`).
pub struct Password(SecretString);

/// Why a new password is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// Fewer than 8 code points.
    #[error("the password must have at least 8 characters")]
    TooShort,
    /// More than 128 code points.
    #[error("the password must have at most 128 characters")]
    TooLong,
    /// A common or easily guessed password.
    #[error("this password is too common or too easy to guess")]
    Common,
    /// The same as the account's e-mail address.
    #[error("the password must not be your e-mail address")]
    EqualsEmail,
}

impl PasswordError {
    /// The stable code the API reports in `errors[].code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooShort => "too_short",
            Self::TooLong => "too_long",
            Self::Common => "too_common",
            Self::EqualsEmail => "equals_email",
        }
    }
}

impl Password {
    /// A password as typed at login: normalized, with no policy applied
    /// (a password set under an older policy must still work).
    pub fn candidate(raw: &str) -> Self {
        Self(SecretString::from(raw.nfkc().collect::<String>()))
    }

    /// A new password, checked against the policy. `context` holds what
    /// the user told us about themselves (the e-mail first, then the name…):
    /// a password equal to the e-mail, or guessable from these, is refused.
    ///
    /// ```
    /// use convosphere_domain::{Password, PasswordError};
    /// assert!(Password::new_for("correct horse battery staple", &["ada@example.com"]).is_ok());
    /// assert_eq!(Password::new_for("short", &[]).unwrap_err(), PasswordError::TooShort);
    /// assert_eq!(Password::new_for("password123", &[]).unwrap_err(), PasswordError::Common);
    /// ```
    #[cfg(feature = "password-strength")]
    pub fn new_for(raw: &str, context: &[&str]) -> Result<Self, PasswordError> {
        let normalized: String = raw.nfkc().collect();
        let chars = normalized.chars().count();
        if chars < MIN_PASSWORD_CHARS {
            return Err(PasswordError::TooShort);
        }
        if chars > MAX_PASSWORD_CHARS {
            return Err(PasswordError::TooLong);
        }
        if let Some(email) = context.first() {
            if normalized.trim().eq_ignore_ascii_case(email.trim()) {
                return Err(PasswordError::EqualsEmail);
            }
        }
        // zxcvbn scores by the guesses an attacker needs, with dictionaries of
        // common passwords, names and words; below 2 means under ~10^6 guesses.
        let estimate = zxcvbn::zxcvbn(&normalized, context);
        if (estimate.score() as u8) < 2 {
            return Err(PasswordError::Common);
        }
        Ok(Self(SecretString::from(normalized)))
    }

    /// The normalized password, for a hasher.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// A stored password hash in PHC string format (`$argon2id$v=19$…`).
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Wraps a PHC string read from storage or made by a hasher.
    pub fn from_phc(phc: impl Into<String>) -> Self {
        Self(phc.into())
    }

    /// The PHC string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(feature = "password-strength")]
    fn length_counts_code_points_after_nfkc() {
        // "ﬀ" (U+FB00) is one code point that NFKC turns into "ff": 4 → 8.
        assert!(Password::new_for("ﬀﬀﬀﬀ", &[]).is_err());
        assert_eq!(Password::new_for("ab", &[]).unwrap_err(), PasswordError::TooShort);
        let seven = "ĳĳĳĳ"; // 4 code points → 8 after NFKC ("ij" each)
        assert!(!matches!(Password::new_for(seven, &[]), Err(PasswordError::TooShort)));
        assert_eq!(
            Password::new_for(&"x9$Qm".repeat(26), &[]).unwrap_err(),
            PasswordError::TooLong
        );
        assert!(Password::new_for(&"x9$Qmv#2".repeat(16), &[]).is_ok());
    }

    #[test]
    fn nfkc_makes_equivalent_spellings_equal() {
        let composed = Password::candidate("caf\u{e9} au lait!");
        let decomposed = Password::candidate("cafe\u{301} au lait!");
        assert_eq!(composed.expose(), decomposed.expose());
    }

    #[test]
    fn no_trimming_or_truncation() {
        assert_eq!(Password::candidate("  spaced  ").expose(), "  spaced  ");
    }

    #[test]
    #[cfg(feature = "password-strength")]
    fn common_and_email_passwords_are_refused() {
        for common in ["password", "12345678", "qwertyuiop", "iloveyou1", "Password1"] {
            assert_eq!(
                Password::new_for(common, &[]).unwrap_err(),
                PasswordError::Common,
                "{common}"
            );
        }
        assert_eq!(
            Password::new_for("Ada.Lovelace@example.com", &["ada.lovelace@example.com"]).unwrap_err(),
            PasswordError::EqualsEmail
        );
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let password = Password::candidate("hunter2hunter2");
        assert!(!format!("{password:?}").contains("hunter2"));
        assert!(!format!("{:?}", PasswordHash::from_phc("$argon2id$secret")).contains("secret"));
    }

    /// Property tests: passwords are arbitrary Unicode from clients.
    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Any Unicode, compatibility characters that NFKC expands or folds
        /// (ligatures, full-width forms, super- and subscripts, ellipses,
        /// Roman numerals, combining marks), around the length limits.
        fn raw_password() -> impl Strategy<Value = String> {
            let expanding = proptest::sample::select(vec![
                '\u{FB00}', '\u{FB03}', '\u{0133}', '\u{2026}', '\u{2161}', '\u{FF21}', '\u{00B2}', '\u{2082}',
                '\u{0301}', '\u{00E9}', '\u{3300}', '\u{FDFA}', 'a', '9', ' ',
            ]);
            prop_oneof![
                any::<String>(),
                proptest::collection::vec(any::<char>(), 0..200).prop_map(String::from_iter),
                proptest::collection::vec(expanding, 0..140).prop_map(String::from_iter),
                "\\PC{120,135}",
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            #[cfg(feature = "password-strength")]
            fn the_length_rule_counts_code_points_after_nfkc(raw in raw_password(), email in "[a-z]{1,8}@example\\.com") {
                let normalized: String = raw.nfkc().collect();
                let chars = normalized.chars().count();
                match Password::new_for(&raw, &[&email]) {
                    Err(PasswordError::TooShort) => prop_assert!(chars < MIN_PASSWORD_CHARS, "{chars} code points"),
                    Err(PasswordError::TooLong) => prop_assert!(chars > MAX_PASSWORD_CHARS, "{chars} code points"),
                    other => {
                        prop_assert!((MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&chars), "{chars} code points");
                        if let Ok(password) = other {
                            prop_assert_eq!(password.expose(), normalized.as_str());
                        }
                    }
                }
            }

            #[test]
            fn candidates_are_nfkc_without_trimming_or_truncation(raw in raw_password()) {
                let candidate = Password::candidate(&raw);
                let normalized: String = raw.nfkc().collect();
                prop_assert_eq!(candidate.expose(), normalized.as_str());
                // NFKC is idempotent: a stored password's form does not drift.
                let again = Password::candidate(candidate.expose());
                prop_assert_eq!(again.expose(), candidate.expose());
                prop_assert_eq!(format!("{candidate:?}"), "Password(***)");
            }
        }
    }
}
