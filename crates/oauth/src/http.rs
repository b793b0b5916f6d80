//! The HTTP client every provider shares, and small helpers.

use convosphere_domain::oauth::{Provider, ProviderError};
use reqwest::Url;

/// One client for all providers: no redirects followed (a provider that
/// redirects an API call is not believed), a timeout on every call, and a
/// `User-Agent` (GitHub's API refuses requests without one).
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(crate::REQUEST_TIMEOUT)
        .user_agent(concat!("convosphere-auth/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Parses a configured endpoint.
pub(crate) fn endpoint(provider: Provider, field: &'static str, text: &str) -> Result<Url, crate::ConfigError> {
    let bad = |reason: String| crate::ConfigError {
        provider,
        field,
        reason,
    };
    let url = Url::parse(text.trim()).map_err(|e| bad(format!("{text:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(bad(format!("{text:?} is not an http(s) URL")));
    }
    Ok(url)
}

/// `base` + `/path`, keeping the base's own path (GitHub Enterprise's `/api/v3`).
pub(crate) fn under(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!("{}/{}", base.path().trim_end_matches('/'), path.trim_start_matches('/'));
    url.set_path(&joined);
    url
}

/// The short description of a failed call (never its body, which could
/// hold a token).
pub(crate) fn unreachable(provider: Provider, what: &str, error: &reqwest::Error) -> ProviderError {
    let why = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "could not be reached".to_owned()
    } else if error.is_decode() {
        "answered something unreadable".to_owned()
    } else {
        "failed".to_owned()
    };
    ProviderError::new(format!("{provider}'s {what} {why}"))
}

/// A call that answered with a non-success status.
pub(crate) fn refused(provider: Provider, what: &str, status: reqwest::StatusCode) -> ProviderError {
    ProviderError::new(format!("{provider}'s {what} answered {status}"))
}

/// Only printable ASCII, at most 200 characters: a provider's error text
/// goes into logs and problem details.
pub(crate) fn clean(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(200)
        .collect()
}

/// The PKCE `S256` challenge of a verifier (RFC 7636).
pub(crate) fn s256(verifier: &str) -> String {
    use openidconnect::{PkceCodeChallenge, PkceCodeVerifier};
    PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(verifier.to_owned()))
        .as_str()
        .to_owned()
}
