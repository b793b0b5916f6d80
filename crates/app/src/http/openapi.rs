//! The OpenAPI 3.1 document, generated from the handlers and bodies.

use super::dto::*;
use super::problem::{FieldProblem, Problem};
use super::{keys, mfa, oauth, routes};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Convosphere Auth", description = "Identity and access for the Convosphere AI platform."),
    paths(
        routes::signup, routes::verify_email, routes::resend_verification, routes::login, routes::refresh,
        routes::forgot_password, routes::reset_password, routes::logout, routes::change_password, routes::me,
        routes::update_profile, routes::list_sessions, routes::revoke_session, routes::jwks, routes::healthz,
        routes::readyz, routes::metrics, routes::openapi, keys::create, keys::list, keys::get, keys::revoke,
        keys::rotate, keys::authz, mfa::begin_totp, mfa::confirm_totp, mfa::disable_totp, mfa::events,
        oauth::start, oauth::callback, oauth::exchange,
    ),
    components(schemas(
        Problem, FieldProblem, UserBody, UserEnvelope, TokenPair, SignupBody, LoginBody, TokenBody, EmailBody,
        RefreshBody, ResetBody, ChangePasswordBody, ProfileBody, StatusBody, SessionBody, SessionList,
        PrincipalBody, MeBody, ApiKeyBody, ApiKeyList, CreateApiKeyBody, RotateApiKeyBody, AuthzBody,
        TotpSetupBody, CodeBody, RecoveryCodesBody, PasswordBody, EventBody, EventList, OAuthCodeBody,
    )),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

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
