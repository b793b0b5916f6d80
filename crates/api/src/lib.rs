#![doc = include_str!("../README.md")]

pub mod account;
pub mod auth;
pub mod keys;
pub mod mfa;
pub mod middleware;
pub mod oauth;
pub mod openapi;
pub mod passkeys;
pub mod routes;
pub mod usage;

pub use convosphere_service::common::carrying_secret;
