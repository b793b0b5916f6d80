//! Profile fields: name, company, country, phone, and their rules.

use crate::FieldError;

/// The most characters a name may have.
pub const MAX_NAME_CHARS: usize = 100;
/// The most characters company and country may have.
pub const MAX_TEXT_CHARS: usize = 100;
/// The most characters a phone number may have.
pub const MAX_PHONE_CHARS: usize = 32;

/// Checks a required display name; returns it trimmed.
pub fn parse_name(raw: &str, errors: &mut Vec<FieldError>) -> String {
    parse_required_text("name", raw, MAX_NAME_CHARS, errors)
}

/// Checks a required one-line text field (1 to `max` characters, no control
/// characters); returns it trimmed.
pub fn parse_required_text(field: &'static str, raw: &str, max: usize, errors: &mut Vec<FieldError>) -> String {
    let value = raw.trim();
    if value.is_empty() {
        errors.push(FieldError::new(field, "required", format!("a {field} is required")));
    } else if value.chars().count() > max {
        errors.push(FieldError::new(
            field,
            "too_long",
            format!("the {field} must have at most {max} characters"),
        ));
    } else if value.chars().any(char::is_control) {
        errors.push(FieldError::new(
            field,
            "invalid",
            format!("the {field} must not contain control characters"),
        ));
    }
    value.to_owned()
}

/// Checks an optional free-text field; empty means absent.
pub fn parse_optional_text(field: &'static str, raw: Option<&str>, errors: &mut Vec<FieldError>) -> Option<String> {
    let value = raw.map(str::trim).filter(|v| !v.is_empty())?;
    if value.chars().count() > MAX_TEXT_CHARS {
        errors.push(FieldError::new(
            field,
            "too_long",
            format!("the {field} must have at most 100 characters"),
        ));
    } else if value.chars().any(char::is_control) {
        errors.push(FieldError::new(
            field,
            "invalid",
            format!("the {field} must not contain control characters"),
        ));
    }
    Some(value.to_owned())
}

/// Checks an optional phone number: digits with `+`, spaces, dots, dashes
/// and parentheses, 5 to 20 digits.
pub fn parse_phone(raw: Option<&str>, errors: &mut Vec<FieldError>) -> Option<String> {
    let value = raw.map(str::trim).filter(|v| !v.is_empty())?;
    let digits = value.chars().filter(char::is_ascii_digit).count();
    let allowed = value.chars().all(|c| c.is_ascii_digit() || " +-.()".contains(c));
    if value.chars().count() > MAX_PHONE_CHARS || !allowed || !(5..=20).contains(&digits) {
        errors.push(FieldError::new(
            "phone",
            "invalid_phone",
            "this is not a valid phone number",
        ));
    }
    Some(value.to_owned())
}

/// A change to the profile (`PATCH /v1/me`): `None` leaves a field as it is,
/// `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileUpdate {
    /// New name.
    pub name: Option<String>,
    /// New company, or cleared.
    pub company: Option<Option<String>>,
    /// New country, or cleared.
    pub country: Option<Option<String>>,
    /// New phone, or cleared.
    pub phone: Option<Option<String>>,
}

impl ProfileUpdate {
    /// Checks a raw update; every problem is reported at once.
    pub fn parse(
        name: Option<&str>,
        company: Option<Option<&str>>,
        country: Option<Option<&str>>,
        phone: Option<Option<&str>>,
    ) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let update = Self {
            name: name.map(|n| parse_name(n, &mut errors)),
            company: company.map(|c| parse_optional_text("company", c, &mut errors)),
            country: country.map(|c| parse_optional_text("country", c, &mut errors)),
            phone: phone.map(|p| parse_phone(p, &mut errors)),
        };
        if errors.is_empty() {
            Ok(update)
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_rules() {
        let mut errors = Vec::new();
        assert_eq!(parse_name("  Ada  ", &mut errors), "Ada");
        assert_eq!(
            parse_phone(Some("+44 (20) 7946-0958"), &mut errors).as_deref(),
            Some("+44 (20) 7946-0958")
        );
        assert_eq!(parse_optional_text("company", Some("   "), &mut errors), None);
        assert!(errors.is_empty());

        parse_name("", &mut errors);
        parse_name(&"x".repeat(101), &mut errors);
        parse_phone(Some("call me"), &mut errors);
        let codes: Vec<_> = errors.iter().map(|e| (e.field, e.code)).collect();
        assert_eq!(
            codes,
            [("name", "required"), ("name", "too_long"), ("phone", "invalid_phone")]
        );
    }

    #[test]
    fn an_update_can_clear_optional_fields() {
        let update = ProfileUpdate::parse(None, Some(None), Some(Some("")), None).unwrap();
        assert_eq!(update.company, Some(None));
        assert_eq!(update.country, Some(None));
        assert_eq!(update.name, None);
        assert!(ProfileUpdate::parse(Some(""), None, None, None).is_err());
    }
}
