//! Errors shown to people: the API's codes and statuses (from the one
//! mapping in `convosphere_service::common::problem`), said in plain words.

use super::layout;
use actix_web::cookie::Cookie;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use convosphere_service::common::problem::ApiError;
use std::fmt;

/// Why a page cannot be shown as asked.
#[derive(Debug)]
pub(crate) enum PageError {
    /// Go elsewhere first (the login page), removing a dead session cookie.
    Redirect {
        /// Where to.
        location: String,
        /// The removal of the session cookie, when it is dead.
        clear: Option<Box<Cookie<'static>>>,
    },
    /// An error page.
    Page {
        /// The status, as the API would answer.
        status: StatusCode,
        /// The API's code.
        code: &'static str,
    },
}

impl PageError {
    /// 403: the form's CSRF token is missing or wrong.
    pub fn csrf() -> Self {
        Self::Page {
            status: StatusCode::FORBIDDEN,
            code: "csrf_failed",
        }
    }

    /// 404.
    pub fn not_found() -> Self {
        Self::Page {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
        }
    }
}

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> Self {
        Self::Page {
            status: error.status(),
            code: error.code(),
        }
    }
}

/// Any outcome the API maps to an error, as a page error.
pub(crate) fn page_error(error: impl Into<ApiError>) -> PageError {
    PageError::from(error.into())
}

impl fmt::Display for PageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Redirect { location, .. } => write!(f, "redirect to {location}"),
            Self::Page { status, code } => write!(f, "{} {code}", status.as_u16()),
        }
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Redirect { .. } => StatusCode::SEE_OTHER,
            Self::Page { status, .. } => *status,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Redirect { location, clear } => {
                let mut response = HttpResponse::SeeOther();
                response.insert_header((header::LOCATION, location.as_str()));
                if let Some(cookie) = clear {
                    response.cookie(Cookie::clone(cookie));
                }
                response.finish()
            }
            Self::Page { status, code } => layout::html(*status, layout::error_page(*status, code)),
        }
    }
}

/// A short heading for an error code.
pub(crate) fn title(code: &str) -> &'static str {
    match code {
        "invalid_request" | "validation_failed" => "Please check the form",
        "password_too_weak" => "Choose a stronger password",
        "payload_too_large" => "Too much at once",
        "link_invalid" => "This link no longer works",
        "invalid_credentials" => "Wrong e-mail or password",
        "mfa_required" => "Two-factor code needed",
        "invalid_mfa_code" => "That code didn't work",
        "session_expired" | "invalid_token" | "token_expired" => "Please sign in again",
        "email_not_verified" => "Confirm your e-mail address first",
        "account_locked" => "This account is locked",
        "not_found" => "Not found",
        "method_not_allowed" => "Not allowed",
        "rate_limited" => "Too many attempts",
        "passkey_failed" => "That passkey could not be used here. Try again, or sign in another way.",
        "mfa_already_enabled" => "Two-factor authentication is already on",
        "mfa_not_pending" => "No two-factor setup to confirm",
        "csrf_failed" => "This form has expired",
        "provider_not_found" => "Sign-in provider not available",
        "oauth_failed" => "Sign-in with the provider failed",
        "unavailable" => "We'll be right back",
        _ => "Something went wrong",
    }
}

/// What an error code means, in plain words.
pub(crate) fn plain_words(code: &str) -> &'static str {
    match code {
        "invalid_request" => "Something about that request wasn't right. Go back and try again.",
        "validation_failed" => "Some fields need your attention.",
        "password_too_weak" => "That password is too easy to guess. Try a longer passphrase.",
        "payload_too_large" => "That was more than we can take in one go.",
        "link_invalid" => {
            "This link is invalid, has been used already, or has expired. Links work once, and only the newest one works."
        }
        "invalid_credentials" => "The e-mail address or the password is not right.",
        "mfa_required" => "Enter the 6-digit code from your authenticator app.",
        "invalid_mfa_code" => {
            "That code is wrong or was used already. Codes change every 30 seconds and each one works once."
        }
        "session_expired" | "invalid_token" | "token_expired" => "Your session has ended. Please sign in again.",
        "email_not_verified" => {
            "Please confirm your e-mail address first: open the link we sent you, or ask for a new one below."
        }
        "account_locked" => {
            "This account is locked, after too many failed attempts or by support. Try again later, or contact support."
        }
        "not_found" => "We couldn't find that. It may be gone, or it may not be yours.",
        "method_not_allowed" => "That page can't be used this way.",
        "rate_limited" => "Too many attempts from your network. Please wait a minute and try again.",
        "mfa_already_enabled" => "Two-factor authentication is already on. Turn it off first to set up another app.",
        "mfa_not_pending" => "There is no two-factor setup waiting for a code. Start the setup again.",
        "csrf_failed" => {
            "This form has expired or was sent from another site, so nothing was changed. Go back, reload the page and try again."
        }
        "provider_not_found" => "That sign-in provider is not available here.",
        "oauth_failed" => "Signing in with the provider did not work. Try again, or use your e-mail and password.",
        "unavailable" => "The service is briefly unavailable. Please try again in a moment.",
        _ => "Something went wrong on our side. Please try again; if it keeps happening, contact support.",
    }
}

/// A message of the domain's rules (`the password must have at least 8
/// characters`) as a sentence: capital first letter, full stop.
pub(crate) fn sentence(message: &str) -> String {
    let mut chars = message.trim().chars();
    let mut text: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => return String::new(),
    };
    if !text.ends_with(['.', '!', '?']) {
        text.push('.');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_messages_read_as_sentences() {
        assert_eq!(
            sentence("the password must have at least 8 characters"),
            "The password must have at least 8 characters."
        );
        assert_eq!(sentence("Done."), "Done.");
        assert_eq!(sentence(""), "");
    }

    #[test]
    fn every_api_code_has_plain_words() {
        for code in [
            "invalid_credentials",
            "mfa_required",
            "invalid_mfa_code",
            "email_not_verified",
            "account_locked",
            "link_invalid",
            "rate_limited",
            "not_found",
            "session_expired",
        ] {
            assert!(!plain_words(code).starts_with("Something went wrong"), "{code}");
        }
    }
}
