//! API keys and the gateway check.

use super::auth::{authorize, UserSession};
use super::routes::{no_errors, Result};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use convosphere_domain::api_key::ApiKeyId;
use convosphere_domain::auth::keys::{parse_key_input, CreatedApiKey};
use convosphere_domain::{FieldError, Scope, ScopeSet};
use convosphere_service::common::extract::{optional_json, ClientInfo, Json};
use convosphere_service::common::problem::{ApiError, Problem};
use convosphere_service::dto::{ApiKeyBody, ApiKeyList, AuthzBody, CreateApiKeyBody, RotateApiKeyBody};
use convosphere_service::state::AppState;
use secrecy::ExposeSecret;

/// The headers `/v1/authz` hands to the gateway (constants: made from
/// text, a header name is parsed on every use).
const X_AUTH_USER_ID: HeaderName = HeaderName::from_static("x-auth-user-id");
const X_AUTH_SCOPES: HeaderName = HeaderName::from_static("x-auth-scopes");
const X_AUTH_PLAN: HeaderName = HeaderName::from_static("x-auth-plan");

/// Reads an optional RFC 3339 time.
fn parse_expiry(raw: Option<String>, errors: &mut Vec<FieldError>) -> Option<DateTime<Utc>> {
    let raw = raw?;
    match DateTime::parse_from_rfc3339(&raw) {
        Ok(at) => Some(at.with_timezone(&Utc)),
        Err(_) => {
            errors.push(FieldError::new(
                "expires_at",
                "invalid_time",
                "expected an RFC 3339 time",
            ));
            None
        }
    }
}

pub(super) fn key_id(raw: &str) -> Result<ApiKeyId> {
    raw.parse().map_err(|_| ApiError::not_found())
}

fn created(created: CreatedApiKey) -> HttpResponse {
    let mut body = ApiKeyBody::new(&created.record, Utc::now());
    body.key = Some(created.key.expose_secret().to_owned());
    super::carrying_secret(StatusCode::CREATED).json(body)
}

/// Create an API key. The answer holds the key; it is shown only this once.
#[utoipa::path(post, path = "/v1/api-keys", tag = "api keys", security(("bearer" = [])),
    request_body = CreateApiKeyBody,
    responses((status = 201, body = ApiKeyBody), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn create(
    state: web::Data<AppState>,
    client: ClientInfo,
    user: UserSession,
    body: Json<CreateApiKeyBody>,
) -> Result {
    let body = body.into_inner();
    let name = body.name.unwrap_or_default();
    let scopes = body.scopes.unwrap_or_default();
    let mut errors = Vec::new();
    let expires_at = parse_expiry(body.expires_at, &mut errors);
    if !errors.is_empty() {
        // An unreadable expiry: report the other fields' problems with it, all at once.
        if let Err(more) = parse_key_input(&name, &scopes, None, Utc::now()) {
            errors.extend(more);
        }
        return Err(ApiError::validation(errors));
    }
    // The domain checks name, scopes and expiry together.
    let key = state
        .auth
        .create_api_key(&user.0, &name, &scopes, expires_at, &client.context())
        .await?;
    Ok(created(key))
}

/// Every API key, newest first, without the keys themselves.
#[utoipa::path(get, path = "/v1/api-keys", tag = "api keys", security(("bearer" = [])),
    responses((status = 200, body = ApiKeyList)))]
pub async fn list(state: web::Data<AppState>, user: UserSession) -> Result {
    let now = Utc::now();
    let keys = state.auth.api_keys(user.0.user.id).await?;
    Ok(HttpResponse::Ok().json(ApiKeyList {
        api_keys: keys.iter().map(|key| ApiKeyBody::new(key, now)).collect(),
    }))
}

/// One API key.
#[utoipa::path(get, path = "/v1/api-keys/{id}", tag = "api keys", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The key's id")),
    responses((status = 200, body = ApiKeyBody), (status = 404, body = Problem)))]
pub async fn get(state: web::Data<AppState>, user: UserSession, id: web::Path<String>) -> Result {
    let key = state.auth.api_key(user.0.user.id, key_id(&id)?).await?;
    Ok(HttpResponse::Ok().json(ApiKeyBody::new(&key, Utc::now())))
}

/// Revoke an API key, at once.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api keys", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The key's id")),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn revoke(
    state: web::Data<AppState>,
    client: ClientInfo,
    user: UserSession,
    id: web::Path<String>,
) -> Result {
    state
        .auth
        .revoke_api_key(user.0.user.id, key_id(&id)?, &client.context())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Replace an API key with a new one of the same name and scopes; the old one is revoked at once.
#[utoipa::path(post, path = "/v1/api-keys/{id}/rotate", tag = "api keys", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The key's id")), request_body = Option<RotateApiKeyBody>,
    responses((status = 201, body = ApiKeyBody), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn rotate(
    state: web::Data<AppState>,
    client: ClientInfo,
    user: UserSession,
    id: web::Path<String>,
    req: HttpRequest,
    body: std::result::Result<Json<RotateApiKeyBody>, ApiError>,
) -> Result {
    let body = optional_json(&req, body)?;
    let mut errors = Vec::new();
    let expires_at = parse_expiry(body.expires_at, &mut errors);
    no_errors(errors)?;
    let key = state
        .auth
        .rotate_api_key(&user.0, key_id(&id)?, expires_at, &client.context())
        .await?;
    Ok(created(key))
}

/// The scopes named by `scope=` parameters.
fn required_scopes(query: &str) -> Result<ScopeSet> {
    // Gateways send `scope=agents:read&scope=…`: without `%` or `+`
    // nothing needs decoding, and the pairs are read in place.
    if query.bytes().any(|b| b == b'%' || b == b'+') {
        return decoded_scopes(query);
    }
    let mut set = ScopeSet::EMPTY;
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name == "scope" {
            add_scopes(&mut set, value)?;
        }
    }
    Ok(set)
}

/// [`required_scopes`] for any query: percent-decoded, `+` as a space.
fn decoded_scopes(query: &str) -> Result<ScopeSet> {
    let mut set = ScopeSet::EMPTY;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if name == "scope" {
            add_scopes(&mut set, &value)?;
        }
    }
    Ok(set)
}

/// Adds the space-separated scopes of one `scope` parameter.
fn add_scopes(set: &mut ScopeSet, value: &str) -> Result<()> {
    // An empty `scope=` (a gateway's unset variable) must not quietly
    // turn the check into authentication only.
    if value.trim().is_empty() {
        return Err(ApiError::invalid_request("scope= names no scope"));
    }
    for scope in value.split_whitespace() {
        let scope: Scope = scope.parse().map_err(|e| ApiError::invalid_request(format!("{e}")))?;
        set.insert(scope);
    }
    Ok(())
}

/// The gateway check: is the credential valid, does it hold the scopes,
/// is the account within its plan's rate limit?
#[utoipa::path(get, path = "/v1/authz", tag = "gateway", security(("bearer" = [])),
    params(("scope" = Option<Vec<convosphere_service::dto::ScopeName>>, Query, description = "A scope the request needs; repeatable")),
    responses((status = 200, body = AuthzBody), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 429, body = Problem)))]
pub async fn authz(req: HttpRequest) -> Result {
    // The credential is checked (and counted) before the query's scopes
    // are read, so a bad credential is told as such whatever the query.
    let required = required_scopes(req.query_string());
    let authorization = authorize(&req, *required.as_ref().unwrap_or(&ScopeSet::EMPTY)).await?;
    required?;
    let caller = authorization.caller;
    let (user, held) = (caller.user(), caller.scopes());
    let user_id = user.id.to_string();
    let mut response = HttpResponse::Ok().json(AuthzBody {
        user_id: user_id.clone(),
        principal: caller.kind(),
        scopes: held,
        plan: user.plan.as_str(),
    });
    let headers = response.headers_mut();
    for (name, value) in [
        (X_AUTH_USER_ID, user_id),
        (X_AUTH_SCOPES, held.to_string()),
        (X_AUTH_PLAN, user.plan.as_str().to_owned()),
    ] {
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(name, value);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn scopes_are_read_from_every_scope_parameter() {
        let set = required_scopes("scope=agents:read&x=1&scope=chat:write%20chat:read").unwrap();
        assert_eq!(set.to_string(), "agents:read chat:read chat:write");
        assert_eq!(
            required_scopes("scope=agents:admin").unwrap_err().code(),
            "invalid_request"
        );
        assert_eq!(required_scopes("scope=&x=1").unwrap_err().code(), "invalid_request");
        assert_eq!(required_scopes("scope=+").unwrap_err().code(), "invalid_request");
        assert!(required_scopes("").unwrap().is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Read in place or decoded, a query names the same scopes.
        #[test]
        fn a_query_without_escapes_reads_as_decoded(
            query in prop_oneof![
                "[a-z=&:]{0,40}",
                "((scope|x|scop)(=[a-z: ]{0,14})?&?){0,4}",
                proptest::collection::vec(proptest::sample::select(Scope::ALL.to_vec()), 0..5)
                    .prop_map(|scopes| scopes.iter().map(|s| format!("scope={}", s.as_str())).collect::<Vec<_>>().join("&")),
            ],
        ) {
            let read = required_scopes(&query).map_err(|e| e.code().to_owned());
            let decoded = decoded_scopes(&query).map_err(|e| e.code().to_owned());
            prop_assert_eq!(read, decoded);
        }

        /// The query string of `/v1/authz` is whatever the gateway forwards.
        #[test]
        fn an_arbitrary_query_never_panics_and_names_only_real_scopes(
            query in prop_oneof![
                any::<String>(),
                "(scope=[a-z:+%0-9]{0,20}&?){0,4}",
                proptest::collection::vec(proptest::sample::select(Scope::ALL.to_vec()), 0..5)
                    .prop_map(|scopes| scopes.iter().map(|s| format!("scope={}", s.as_str())).collect::<Vec<_>>().join("&")),
            ],
        ) {
            match required_scopes(&query) {
                Ok(set) => {
                    let named: Vec<String> = form_urlencoded::parse(query.as_bytes())
                        .filter(|(name, _)| name == "scope")
                        .map(|(_, value)| value.into_owned())
                        .collect();
                    for scope in set.iter() {
                        prop_assert!(named.iter().any(|value| value.split_whitespace().any(|s| s == scope.as_str())));
                    }
                }
                Err(error) => prop_assert_eq!(error.code(), "invalid_request"),
            }
        }
    }
}
