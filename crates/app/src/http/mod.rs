//! The JSON API: its routes, handlers, bodies, middleware and OpenAPI document.

pub mod auth;
pub mod dto;
pub mod keys;
pub mod mfa;
pub mod middleware;
pub mod oauth;
pub mod openapi;
pub mod routes;
