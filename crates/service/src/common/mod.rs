//! What the JSON API and the pages share: problem+json, the extractors,
//! and the browser's cookie session. Neither imports the other.

pub mod cookie;
pub mod extract;
mod outcomes;
pub mod problem;

use crate::dto::ExportBody;
use crate::state::AppState;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, HttpResponseBuilder};
use convosphere_domain::ports::RateLimitDecision;
use convosphere_domain::{SessionId, User};

/// The largest request body accepted (64 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// `RateLimit-Reset`: whole seconds until the budget is full again, rounded up.
fn reset_seconds(decision: &RateLimitDecision) -> u64 {
    decision.reset_after.as_secs_f64().ceil() as u64
}

/// Sets the `RateLimit-*` headers of a decision: on every answer that
/// passed a limiter (`observe`) and on its 429 (`ApiError::rate_limited`).
pub fn insert_rate_limit_headers(headers: &mut HeaderMap, decision: &RateLimitDecision) {
    headers.insert(RATELIMIT_LIMIT, HeaderValue::from(decision.limit));
    headers.insert(RATELIMIT_REMAINING, HeaderValue::from(decision.remaining));
    headers.insert(RATELIMIT_RESET, HeaderValue::from(reset_seconds(decision)));
}

/// The passkey ceremonies, or `not_found` when passkeys are off (the public
/// URL is an IP address).
pub fn passkey_verifier(state: &AppState) -> Result<&convosphere_passkey::WebauthnVerifier, problem::ApiError> {
    state.passkeys.as_ref().ok_or_else(problem::ApiError::not_found)
}

/// The start of an answer that carries a secret (a token, an API key, a
/// TOTP secret, recovery codes): `Cache-Control: no-store` (RFC 6749 §5.1),
/// so that no cache on the way keeps it.
pub fn carrying_secret(status: StatusCode) -> HttpResponseBuilder {
    let mut response = HttpResponse::build(status);
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    response
}

/// Everything kept about the account, as an `attachment` (no secret, no
/// hash; never cached on the way): for the API and the account page alike.
pub async fn export_document(
    state: &AppState,
    user: &User,
    session: Option<SessionId>,
) -> Result<HttpResponse, problem::ApiError> {
    let export = state.auth.export(user).await?;
    let body = ExportBody::new(&export, state.auth.config().session_idle_timeout, session);
    let name = format!("convosphere-account-{}.json", export.exported_at.format("%Y-%m-%d"));
    Ok(carrying_secret(StatusCode::OK)
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")))
        .json(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_is_rounded_up_to_whole_seconds() {
        let decision = |reset_after| RateLimitDecision {
            allowed: true,
            limit: 60,
            remaining: 59,
            reset_after,
            retry_after: None,
        };
        assert_eq!(reset_seconds(&decision(std::time::Duration::ZERO)), 0);
        assert_eq!(reset_seconds(&decision(std::time::Duration::from_millis(1))), 1);
        assert_eq!(reset_seconds(&decision(std::time::Duration::from_secs(60))), 60);
        let mut headers = HeaderMap::new();
        insert_rate_limit_headers(&mut headers, &decision(std::time::Duration::from_millis(1500)));
        assert_eq!(headers.get("ratelimit-reset").unwrap(), "2");
    }
}
