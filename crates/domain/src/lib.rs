#![doc = include_str!("../README.md")]

pub mod account;
pub mod api_key;
#[cfg(feature = "use-cases")]
pub mod auth;
pub mod credential;
pub mod email;
pub mod error;
pub mod event;
pub mod ids;
pub mod mfa;
pub mod oauth;
pub mod passkey;
pub mod password;
pub mod plan;
pub mod ports;
pub mod profile;
pub mod scope;
pub mod session;
pub mod token;
pub mod usage;
pub mod user;

pub use api_key::{ApiKeyFormatError, PresentedApiKey};
#[cfg(feature = "use-cases")]
pub use auth::gateway::{Authorization, AuthorizeError, Caller, CredentialError};
#[cfg(feature = "use-cases")]
pub use auth::{Auth, AuthConfig, IssuedTokens, LoginRequest, Principal, Runtime, SecondFactor, SignupRequest};
pub use credential::Credential;
pub use email::{Email, EmailError};
pub use error::{FieldError, InfraError};
pub use event::{ClientContext, EventId, EventKind, SecurityEvent};
pub use ids::{PasskeyId, SessionId, UserId};
pub use password::{Password, PasswordError, PasswordHash};
pub use plan::{Plan, PlanLimits, UnknownPlan};
pub use ports::{AccessClaims, TokenVerifyError};
pub use scope::{Scope, ScopeSet, UnknownScope};
pub use secrecy::{ExposeSecret, SecretString};
pub use session::{AuthMethod, EndReason, Session};
pub use token::{OpaqueToken, TokenHash, TokenKind};
pub use user::{NewUser, User};
