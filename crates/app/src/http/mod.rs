//! The JSON API: its routes, handlers, bodies, middleware and OpenAPI document.

pub mod account;
pub mod auth;
pub mod dto;
pub mod keys;
pub mod mfa;
pub mod middleware;
pub mod oauth;
pub mod openapi;
pub mod passkeys;
pub mod routes;
pub mod usage;

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, HttpResponseBuilder};

/// The start of an answer that carries a secret (a token, an API key, a
/// TOTP secret, recovery codes): `Cache-Control: no-store` (RFC 6749 §5.1),
/// so that no cache on the way keeps it.
pub fn carrying_secret(status: StatusCode) -> HttpResponseBuilder {
    let mut response = HttpResponse::build(status);
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    response
}
