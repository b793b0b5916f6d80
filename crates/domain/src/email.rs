//! E-mail addresses: trimmed, lower-cased, checked once.

use std::fmt;

/// A syntactically valid e-mail address, trimmed and lower-cased.
///
/// ```
/// use convosphere_domain::Email;
/// let email = Email::parse("  Ada@Example.COM ").unwrap();
/// assert_eq!(email.as_str(), "ada@example.com");
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
    /// Parses, trims and lower-cases an address.
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let email = raw.trim().to_lowercase();
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
}
