//! Request and response bodies of the JSON API.

use chrono::{DateTime, SecondsFormat, Utc};
use convosphere_domain::auth::IssuedTokens;
use convosphere_domain::SecretString;
use convosphere_domain::{ScopeSet, SecondFactor, SecurityEvent, Session, SessionId, User};
use serde::{Deserialize, Serialize, Serializer};

mod export;
mod identities;
mod keys;
mod passkeys;
mod usage;
pub use export::*;
pub use identities::*;
pub use keys::*;
pub use passkeys::*;
pub use usage::*;

/// RFC 3339 in UTC to the second, as every body writes times.
pub(super) fn rfc3339_string(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub(super) fn rfc3339<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339_string(at))
}

/// An account, as every endpoint shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct UserBody {
    /// The account's id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Login address (lower-case).
    pub email: String,
    /// Whether the address is verified.
    pub email_verified: bool,
    /// Company.
    pub company: Option<String>,
    /// Country.
    pub country: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// `free`, `starter`, `business` or `pro`.
    pub plan: String,
    /// Whether two-factor authentication is on.
    pub mfa_enabled: bool,
    /// Creation time (RFC 3339, UTC).
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
}

impl From<&User> for UserBody {
    fn from(user: &User) -> Self {
        Self {
            id: user.id.to_string(),
            name: user.name.clone(),
            email: user.email.as_str().to_owned(),
            email_verified: user.email_verified,
            company: user.company.clone(),
            country: user.country.clone(),
            phone: user.phone.clone(),
            plan: user.plan.as_str().to_owned(),
            mfa_enabled: user.mfa_enabled,
            created_at: user.created_at,
        }
    }
}

/// `{"user": User}`
#[derive(Serialize, utoipa::ToSchema)]
pub struct UserEnvelope {
    /// The account.
    pub user: UserBody,
}

/// Tokens of a login or refresh.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenPair {
    /// The JWT access token.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// The refresh token (opaque; shown once).
    pub refresh_token: String,
    /// Seconds until the session's refresh lifetime ends.
    pub refresh_expires_in: i64,
    /// The session's id.
    pub session_id: String,
    /// The account.
    pub user: UserBody,
}

impl From<IssuedTokens> for TokenPair {
    fn from(t: IssuedTokens) -> Self {
        Self {
            access_token: t.access_token,
            token_type: "Bearer",
            expires_in: t.expires_in,
            refresh_token: t.refresh_token.expose().to_owned(),
            refresh_expires_in: t.refresh_expires_in,
            session_id: t.session_id.to_string(),
            user: UserBody::from(&t.user),
        }
    }
}

/// `POST /v1/auth/signup`
#[derive(Deserialize, utoipa::ToSchema)]
pub struct SignupBody {
    /// Display name (required).
    #[schema(required = true, value_type = String, min_length = 1)]
    pub name: Option<String>,
    /// E-mail address (required).
    #[schema(required = true, value_type = String, min_length = 1)]
    pub email: Option<String>,
    /// Password, 8 to 128 characters (required).
    #[schema(required = true, value_type = String, min_length = 1)]
    pub password: Option<String>,
    /// Company.
    pub company: Option<String>,
    /// Country.
    pub country: Option<String>,
    /// Phone number.
    pub phone: Option<String>,
}

/// `POST /v1/auth/login`
#[derive(Deserialize, utoipa::ToSchema)]
pub struct LoginBody {
    /// E-mail address.
    #[schema(required = true, value_type = String, min_length = 1)]
    pub email: Option<String>,
    /// Password.
    #[schema(required = true, value_type = String, min_length = 1)]
    pub password: Option<String>,
    /// A TOTP code, when two-factor authentication is on.
    pub totp_code: Option<String>,
    /// A recovery code, instead of a TOTP code.
    pub recovery_code: Option<String>,
}

/// `POST /v1/auth/reauthenticate`
#[derive(Deserialize, utoipa::ToSchema)]
pub struct ReauthenticateBody {
    /// The account's password (or `challenge_id` and `credential`, a passkey's assertion).
    #[schema(value_type = String, min_length = 1)]
    pub password: Option<String>,
    /// A TOTP code, when two-factor authentication is on.
    pub totp_code: Option<String>,
    /// A recovery code, instead of a TOTP code.
    pub recovery_code: Option<String>,
    /// Instead of the password: a challenge from `/v1/auth/passkey/start`…
    pub challenge_id: Option<String>,
    /// …and the assertion of one of the account's passkeys.
    #[schema(value_type = Option<Object>)]
    pub credential: Option<serde_json::Value>,
}

/// A body holding a token (`verify-email`).
#[derive(Deserialize, utoipa::ToSchema)]
pub struct TokenBody {
    /// The token from the e-mailed link.
    #[schema(required = true, value_type = String, min_length = 1)]
    pub token: Option<String>,
}

/// A body holding an e-mail address (`resend`, `forgot`).
#[derive(Deserialize, utoipa::ToSchema)]
pub struct EmailBody {
    /// The address.
    #[schema(required = true, value_type = String, min_length = 1)]
    pub email: Option<String>,
}

/// `POST /v1/auth/refresh`
#[derive(Deserialize, utoipa::ToSchema)]
pub struct RefreshBody {
    /// The current refresh token.
    #[schema(required = true, value_type = String, min_length = 1)]
    pub refresh_token: Option<String>,
}

/// `POST /v1/auth/password/reset`
#[derive(Deserialize, utoipa::ToSchema)]
pub struct ResetBody {
    /// The token from the e-mailed link.
    #[schema(required = true, value_type = String, min_length = 1)]
    pub token: Option<String>,
    /// The new password.
    #[schema(required = true, value_type = String, min_length = 1)]
    pub password: Option<String>,
}

/// `POST /v1/auth/password/change`
#[derive(Deserialize, utoipa::ToSchema)]
pub struct ChangePasswordBody {
    /// The password in use now.
    #[schema(required = true, value_type = String, min_length = 1)]
    pub current_password: Option<String>,
    /// The new password.
    #[schema(required = true, value_type = String, min_length = 1)]
    pub new_password: Option<String>,
}

/// A field that may be absent (unchanged), `null` (cleared) or a value.
#[derive(Default)]
pub enum Patch {
    /// Not in the body: unchanged.
    #[default]
    Absent,
    /// `null`: cleared.
    Null,
    /// A new value.
    Value(String),
}

impl<'de> Deserialize<'de> for Patch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Option::<String>::deserialize(d)? {
            None => Patch::Null,
            Some(value) => Patch::Value(value),
        })
    }
}

impl Patch {
    /// As the domain's "absent / cleared / value".
    pub fn as_update(&self) -> Option<Option<&str>> {
        match self {
            Patch::Absent => None,
            Patch::Null => Some(None),
            Patch::Value(v) => Some(Some(v)),
        }
    }
}

/// `PATCH /v1/me`
#[derive(Deserialize, utoipa::ToSchema)]
pub struct ProfileBody {
    /// New name (cannot be cleared).
    #[serde(default)]
    #[schema(value_type = String, min_length = 1, max_length = 100)]
    pub name: Patch,
    /// New company, or `null` to clear.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub company: Patch,
    /// New country, or `null` to clear.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub country: Patch,
    /// New phone, or `null` to clear.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub phone: Patch,
}

/// `{"status": "verification_sent"}` and other accepted answers.
#[derive(Serialize, utoipa::ToSchema)]
pub struct StatusBody {
    /// What happened.
    pub status: &'static str,
}

/// One session in the list.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionBody {
    /// The session's id.
    pub id: String,
    /// Login time.
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    /// Last use.
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub last_active_at: DateTime<Utc>,
    /// When it ends if unused (the idle timeout) or at the latest (the refresh lifetime).
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: DateTime<Utc>,
    /// Client IP at login.
    pub ip: Option<String>,
    /// Client `User-Agent` at login.
    pub user_agent: Option<String>,
    /// Whether this is the session of the request.
    pub current: bool,
}

impl SessionBody {
    /// The session as listed to its owner.
    pub fn new(session: &Session, idle_timeout: chrono::Duration, current: SessionId) -> Self {
        Self {
            id: session.id.to_string(),
            created_at: session.created_at,
            last_active_at: session.last_active_at,
            expires_at: session.expires_at.min(session.last_active_at + idle_timeout),
            ip: session.ip.clone(),
            user_agent: session.user_agent.clone(),
            current: session.id == current,
        }
    }
}

/// `GET /v1/sessions`
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionList {
    /// Active sessions, newest first.
    pub sessions: Vec<SessionBody>,
}

/// The caller of `GET /v1/me`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PrincipalBody {
    /// `user` or `api_key`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The scopes held (a user token holds all ten).
    #[serde(serialize_with = "scope_names")]
    #[schema(value_type = Vec<String>)]
    pub scopes: ScopeSet,
    /// The session, for a user token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The key, for an API key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<String>,
}

/// `GET /v1/me`
#[derive(Serialize, utoipa::ToSchema)]
pub struct MeBody {
    /// The account.
    pub user: UserBody,
    /// The credential used.
    pub principal: PrincipalBody,
}

/// A set of scopes as serde writes it: an array of their names.
pub(super) fn scope_names<S: Serializer>(set: &ScopeSet, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(set.iter().map(|scope| scope.as_str()))
}

pub(super) fn rfc3339_opt<S: Serializer>(at: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => rfc3339(at, s),
        None => s.serialize_none(),
    }
}

/// `POST /v1/me/mfa/totp`: the new secret, to enter in an authenticator app.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TotpSetupBody {
    /// The secret in base32 (for typing it in).
    pub secret: String,
    /// The `otpauth://totp/…` URI (for a QR code).
    pub otpauth_uri: String,
}

/// `POST /v1/me/mfa/totp/confirm`
#[derive(Deserialize, utoipa::ToSchema)]
pub struct CodeBody {
    /// The 6-digit code the app shows now.
    #[schema(required = true, value_type = String, min_length = 1)]
    pub code: Option<String>,
}

/// `POST /v1/auth/oauth/exchange`
#[derive(Deserialize, utoipa::ToSchema)]
pub struct OAuthCodeBody {
    /// The one-time code the callback put in the redirect (`?code=`).
    pub code: Option<String>,
    /// A TOTP code, when two-factor authentication is on for the account.
    pub totp_code: Option<String>,
    /// A recovery code, instead of a TOTP code.
    pub recovery_code: Option<String>,
}

/// A second factor as a body sends it: empty strings are none.
fn second_factor(totp_code: &mut Option<String>, recovery_code: &mut Option<String>) -> SecondFactor {
    let code = |code: &mut Option<String>| code.take().filter(|c| !c.is_empty()).map(SecretString::from);
    SecondFactor {
        totp_code: code(totp_code),
        recovery_code: code(recovery_code),
    }
}

impl OAuthCodeBody {
    /// The second factor sent with the code.
    pub fn second_factor(&mut self) -> SecondFactor {
        second_factor(&mut self.totp_code, &mut self.recovery_code)
    }
}

impl LoginBody {
    /// The second factor sent with the password.
    pub fn second_factor(&mut self) -> SecondFactor {
        second_factor(&mut self.totp_code, &mut self.recovery_code)
    }
}

impl ReauthenticateBody {
    /// The second factor sent with the password.
    pub fn second_factor(&mut self) -> SecondFactor {
        second_factor(&mut self.totp_code, &mut self.recovery_code)
    }
}

/// The recovery codes, shown this once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RecoveryCodesBody {
    /// Ten codes; each logs in once instead of a TOTP code.
    pub recovery_codes: Vec<String>,
}

/// `DELETE /v1/me/mfa/totp`, `DELETE /v1/me`
#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct PasswordBody {
    /// The account's password.
    #[schema(required = true, value_type = String, min_length = 1)]
    pub password: Option<String>,
}

/// One security event.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventBody {
    /// Its id.
    pub id: String,
    /// What happened (`login_succeeded`, `api_key_created`, …).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// When.
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: DateTime<Utc>,
    /// From which IP.
    pub ip: Option<String>,
    /// With which user agent.
    pub user_agent: Option<String>,
    /// Non-secret particulars (a reason, a key's prefix, a plan).
    #[schema(value_type = Object)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl From<&SecurityEvent> for EventBody {
    fn from(event: &SecurityEvent) -> Self {
        Self {
            id: event.id.to_string(),
            kind: event.kind.as_str(),
            at: event.at,
            ip: event.ip.clone(),
            user_agent: event.user_agent.clone(),
            details: event
                .details
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect(),
        }
    }
}

/// `GET /v1/me/events`
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventList {
    /// Newest first.
    pub events: Vec<EventBody>,
    /// Pass as `before` for the next (older) page; `null` on the last.
    pub next: Option<String>,
}
