//! The OpenAPI 3.1 document, generated from the handlers and bodies.

use super::{account, keys, mfa, oauth, passkeys, routes, usage};
use convosphere_service::common::problem::{FieldProblem, Problem, PROBLEM_JSON};
use convosphere_service::dto::*;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Response};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Convosphere Auth", description = "Identity and access for the Convosphere AI platform."),
    paths(
        routes::signup, routes::verify_email, routes::resend_verification, routes::login, routes::refresh, routes::reauthenticate,
        routes::forgot_password, routes::reset_password, routes::logout, routes::change_password, routes::me,
        routes::update_profile, routes::export, routes::list_sessions, routes::revoke_session, routes::jwks, routes::healthz,
        routes::readyz, routes::metrics, routes::openapi, keys::create, keys::list, keys::get, keys::revoke,
        keys::rotate, keys::authz, mfa::begin_totp, mfa::confirm_totp, mfa::disable_totp, mfa::events,
        oauth::start, oauth::callback, oauth::exchange, oauth::identities, oauth::unlink, usage::account, usage::key,
        passkeys::register_start, passkeys::register_finish, passkeys::list, passkeys::remove, passkeys::sign_in_start,
        passkeys::sign_in_finish, account::change_email, account::confirm_email, account::delete_account,
    ),
    components(schemas(
        Problem, FieldProblem, UserBody, UserEnvelope, TokenPair, SignupBody, LoginBody, TokenBody, EmailBody,
        RefreshBody, ResetBody, ChangePasswordBody, ReauthenticateBody, ProfileBody, StatusBody, SessionBody, SessionList,
        PrincipalBody, MeBody, ApiKeyBody, ApiKeyList, CreateApiKeyBody, RotateApiKeyBody, AuthzBody,
        TotpSetupBody, CodeBody, RecoveryCodesBody, PasswordBody, EventBody, EventList, OAuthCodeBody,
        ScopeName, UsageBody, UsageBucketBody, UsageTotalsBody, IdentityBody, IdentityList, ExportBody, TwoFactorBody, KeyExportBody, KeyNetworkBody, PendingEmailChangeBody,
        PasskeyChallengeBody, PasskeyRegistrationBody, PasskeyAssertionBody, PasskeyBody, PasskeyList,
    )),
    modifiers(&BearerAuth, &ProblemResponses),
)]
struct ApiDoc;

/// The endpoints behind the per-IP limit (`AUTH_IP_RATE_LIMIT`).
const IP_LIMITED: &[&str] = &[
    "/v1/auth/signup",
    "/v1/auth/verify-email",
    "/v1/auth/verify-email/resend",
    "/v1/auth/login",
    "/v1/auth/refresh",
    "/v1/auth/password/forgot",
    "/v1/auth/password/reset",
    "/v1/auth/oauth/{provider}/start",
    "/v1/auth/oauth/{provider}/callback",
    "/v1/auth/oauth/exchange",
    "/v1/auth/email/confirm",
    "/v1/auth/passkey/start",
    "/v1/auth/passkey/finish",
];

/// The answers every handler can give without saying so in its own
/// annotation, added in one place: problem+json (not `application/json`)
/// for every error; 400/413/422 where a JSON body is read; 400 where query
/// parameters are; 401/403/429 where a credential is; 429 behind the per-IP
/// limit; 500/503 wherever the database is asked.
struct ProblemResponses;

fn problem_response(description: &str) -> RefOr<Response> {
    let mut response = Response::new(description);
    response.content.insert(
        PROBLEM_JSON.to_owned(),
        Content::new(Some(Ref::from_schema_name("Problem"))),
    );
    RefOr::T(response)
}

fn add(operation: &mut Operation, status: &str, description: &str) {
    operation
        .responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| problem_response(description));
}

impl Modify for ProblemResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                if operation.request_body.is_some() {
                    add(
                        operation,
                        "400",
                        "`invalid_request`: malformed JSON, wrong content type or field type",
                    );
                    add(operation, "413", "`payload_too_large`: a body over 64 KiB");
                    add(
                        operation,
                        "422",
                        "`validation_failed` (with `errors`) or `password_too_weak`",
                    );
                }
                let has_query = operation
                    .parameters
                    .iter()
                    .flatten()
                    .any(|p| p.parameter_in == ParameterIn::Query);
                if has_query {
                    add(operation, "400", "`invalid_request`: a malformed query parameter");
                }
                if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    add(operation, "401", "`missing_credentials`, `invalid_token`, `token_expired`, `session_expired`, `invalid_api_key`, `api_key_expired` or `api_key_revoked`");
                    add(
                        operation,
                        "403",
                        "`account_locked`, `insufficient_scope` or `user_token_required`",
                    );
                    add(operation, "429", "`rate_limited`: the account's plan budget is spent");
                }
                if IP_LIMITED.contains(&path.as_str()) {
                    add(operation, "429", "`rate_limited`: too many requests from this IP");
                }
                if path.starts_with("/v1/") {
                    add(operation, "500", "`internal`: nothing about the cause is told");
                    add(
                        operation,
                        "503",
                        "`unavailable`: the database cannot be reached; try again",
                    );
                }
                for (status, response) in operation.responses.responses.iter_mut() {
                    let RefOr::T(response) = response else { continue };
                    if status.starts_with('4') || status.starts_with('5') {
                        if let Some(content) = response.content.shift_remove("application/json") {
                            response.content.insert(PROBLEM_JSON.to_owned(), content);
                        }
                        if response.description.is_empty() {
                            response.description = default_description(status).to_owned();
                        }
                    }
                }
            }
        }
    }
}

fn default_description(status: &str) -> &'static str {
    match status {
        "400" => "`invalid_request` or `link_invalid`",
        "401" => "`invalid_credentials`, `mfa_required`, `invalid_mfa_code` or a credential problem",
        "403" => "`email_not_verified`, `account_locked`, `insufficient_scope` or `user_token_required`",
        "404" => "`not_found`",
        "409" => "the state does not allow it (`mfa_already_enabled`, `mfa_not_pending`)",
        "422" => "`validation_failed` (with `errors`) or `password_too_weak`",
        "429" => "`rate_limited`",
        "503" => "`unavailable`: the database cannot be reached",
        _ => "a problem (RFC 9457)",
    }
}

/// The methods each documented path answers (for `Allow` on a 405).
pub fn allowed_methods(path: &str) -> Option<&'static str> {
    static ALLOWED: std::sync::OnceLock<std::collections::HashMap<String, String>> = std::sync::OnceLock::new();
    ALLOWED
        .get_or_init(|| {
            ApiDoc::openapi()
                .paths
                .paths
                .iter()
                .map(|(path, item)| {
                    let methods: Vec<&str> = [
                        ("GET", item.get.is_some()),
                        ("POST", item.post.is_some()),
                        ("PUT", item.put.is_some()),
                        ("PATCH", item.patch.is_some()),
                        ("DELETE", item.delete.is_some()),
                    ]
                    .into_iter()
                    .filter_map(|(method, present)| present.then_some(method))
                    .collect();
                    (path.clone(), methods.join(", "))
                })
                .collect()
        })
        .get(path)
        .map(String::as_str)
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// The document as JSON.
pub fn document() -> String {
    ApiDoc::openapi().to_json().unwrap_or_default()
}
