//! Request and response bodies of the JSON API.

use chrono::{DateTime, SecondsFormat, Utc};
use convosphere_domain::auth::IssuedTokens;
use convosphere_domain::{Session, SessionId, User};
use serde::{Deserialize, Serialize, Serializer};

fn rfc3339<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Secs, true))
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
    pub name: Option<String>,
    /// E-mail address (required).
    pub email: Option<String>,
    /// Password, 8 to 128 characters (required).
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
    pub email: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// A TOTP code, when two-factor authentication is on.
    pub totp_code: Option<String>,
    /// A recovery code, instead of a TOTP code.
    pub recovery_code: Option<String>,
}

/// A body holding a token (`verify-email`).
#[derive(Deserialize, utoipa::ToSchema)]
pub struct TokenBody {
    /// The token from the e-mailed link.
    pub token: Option<String>,
}

/// A body holding an e-mail address (`resend`, `forgot`).
#[derive(Deserialize, utoipa::ToSchema)]
pub struct EmailBody {
    /// The address.
    pub email: Option<String>,
}

/// `POST /v1/auth/refresh`
#[derive(Deserialize, utoipa::ToSchema)]
pub struct RefreshBody {
    /// The current refresh token.
    pub refresh_token: Option<String>,
}

/// `POST /v1/auth/password/reset`
#[derive(Deserialize, utoipa::ToSchema)]
pub struct ResetBody {
    /// The token from the e-mailed link.
    pub token: Option<String>,
    /// The new password.
    pub password: Option<String>,
}

/// `POST /v1/auth/password/change`
#[derive(Deserialize, utoipa::ToSchema)]
pub struct ChangePasswordBody {
    /// The password in use now.
    pub current_password: Option<String>,
    /// The new password.
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
    #[schema(value_type = Option<String>)]
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
    pub scopes: Vec<String>,
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
