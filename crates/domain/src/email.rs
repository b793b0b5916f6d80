//! E-mail addresses: NFKC-normalized, trimmed, lower-cased, checked once.

use std::fmt;

/// A syntactically valid e-mail address, NFKC-normalized, trimmed and
/// lower-cased. NFKC first, so that look-alikes that are the same text to a
/// reader (full-width `ａｄａ＠ｅｘａｍｐｌｅ．ｃｏｍ`, ligatures such as `ﬁ`)
/// are one address and one account, not a second account that looks like
/// the first.
///
/// ```
/// use convosphere_domain::Email;
/// let email = Email::parse("  Ada@Example.COM ").unwrap();
/// assert_eq!(email.as_str(), "ada@example.com");
/// assert_eq!(Email::parse("ａｄａ＠ｅｘａｍｐｌｅ．ｃｏｍ").unwrap(), email);
/// assert!(Email::parse("not-an-address").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

/// Why a string is not an e-mail address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    /// Nothing was given.
    #[error("an e-mail address is required")]
    Empty,
    /// Longer than the 254 characters SMTP allows.
    #[error("the e-mail address is longer than 254 characters")]
    TooLong,
    /// Not of the form `local@domain.tld`.
    #[error("this is not a valid e-mail address")]
    Invalid,
}

impl EmailError {
    /// The stable code the API reports.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Empty => "required",
            Self::TooLong => "too_long",
            Self::Invalid => "invalid_email",
        }
    }
}

impl Email {
    /// Parses, normalizes (NFKC), trims and lower-cases an address.
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        use unicode_normalization::UnicodeNormalization;
        // Each may undo the other (NFKC turns `ℌ` into `H`, lower-casing `İ`
        // into `i` and a combining dot): twice, so that a parsed address parses as itself.
        let once = raw.nfkc().collect::<String>().to_lowercase();
        let email = once.nfkc().collect::<String>().to_lowercase().trim().to_owned();
        if email.is_empty() {
            return Err(EmailError::Empty);
        }
        if email.chars().count() > 254 {
            return Err(EmailError::TooLong);
        }
        let (local, domain) = email.rsplit_once('@').ok_or(EmailError::Invalid)?;
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .chars()
                .all(|c| c.is_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
        let domain_ok = domain.contains('.')
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        if local_ok && domain_ok {
            Ok(Self(email))
        } else {
            Err(EmailError::Invalid)
        }
    }

    /// The normalized address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({})", self.0)
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_trimmed_and_lower_cased() {
        assert_eq!(Email::parse(" A.B@X.Io\n").map(|e| e.0), Ok("a.b@x.io".into()));
    }

    #[test]
    fn look_alikes_are_one_address_and_parsing_twice_changes_nothing() {
        let ada = Email::parse("ada@example.com").unwrap();
        for alike in [
            "ＡＤＡ＠ＥＸＡＭＰＬＥ．ＣＯＭ",
            "\u{3000}ada@example.com",
            "ada@ｅxample.com",
        ] {
            assert_eq!(Email::parse(alike).as_ref(), Ok(&ada), "{alike}");
        }
        assert_eq!(Email::parse("ﬁ@example.com").unwrap().as_str(), "fi@example.com");
        assert_eq!(Email::parse("ℌ@example.com").unwrap().as_str(), "h@example.com");
        for raw in ["ÅNGSTRÖM@example.com", "ǅ@example.com", "x@ℌ.ℭ"] {
            let once = Email::parse(raw).unwrap();
            assert_eq!(Email::parse(once.as_str()).as_ref(), Ok(&once), "{raw}");
        }
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for bad in [
            "", "  ", "a", "a@", "@b.c", "a@b", "a b@c.d", "a@b..c", "a@-b.c", ".a@b.c", "a@@b.c",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(Email::parse(""), Err(EmailError::Empty));
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(Email::parse(&long), Err(EmailError::TooLong));
    }

    /// Property tests: `parse` takes whatever a client sends.
    mod properties {
        use super::*;
        use proptest::prelude::*;
        use unicode_normalization::UnicodeNormalization;

        /// Arbitrary text, and address-shaped text: a local part of the
        /// allowed characters (and some that are not), any case, labels with
        /// letters of any script, padded with white space.
        fn raw_address() -> impl Strategy<Value = String> {
            let local = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{0,70}|\\PC{1,20}";
            let label = "[A-Za-z0-9-]{0,70}|[\\p{L}\\p{N}]{1,10}";
            let address = (
                "[ \t\n]{0,2}",
                local,
                proptest::collection::vec(label, 1..4),
                "[ \t\n\u{a0}]{0,2}",
            )
                .prop_map(|(before, local, labels, after)| format!("{before}{local}@{}{after}", labels.join(".")));
            prop_oneof![any::<String>(), address]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn parse_never_panics_and_accepts_only_normalized_addresses(raw in raw_address()) {
                match Email::parse(&raw) {
                    Ok(email) => {
                        let text = email.as_str();
                        prop_assert_eq!(text, text.trim());
                        prop_assert_eq!(text, text.to_lowercase());
                        prop_assert!(text.chars().count() <= 254);
                        let (local, domain) = text.rsplit_once('@').unwrap();
                        prop_assert!(!local.is_empty() && local.len() <= 64 && domain.contains('.'));
                        prop_assert!(!text.chars().any(char::is_whitespace));
                        // Normal form is a fixed point: parsing it again changes nothing.
                        prop_assert_eq!(Email::parse(text), Ok(email.clone()));
                    }
                    Err(EmailError::Empty) => prop_assert!(raw.trim().is_empty()),
                    // Lower-casing may lengthen a character after NFKC (`İ`): up to 3 times.
                    Err(EmailError::TooLong) => prop_assert!(raw.nfkc().count() * 3 > 254),
                    Err(EmailError::Invalid) => {}
                }
            }
        }
    }
}
