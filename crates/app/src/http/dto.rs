//! Request and response bodies of the JSON API.

use actix_web::http::header::{HeaderValue, CONTENT_TYPE};
use actix_web::HttpResponse;
use chrono::{DateTime, SecondsFormat, Utc};
use convosphere_domain::auth::{IssuedTokens, Redacted};
use convosphere_domain::{Scope, ScopeSet, SecondFactor, SecurityEvent, Session, SessionId, User};
use serde::{Deserialize, Serialize, Serializer};
use std::cell::RefCell;

/// A 200 answer whose JSON body was written by hand (`/v1/authz`, `/v1/me`).
pub(crate) fn json_ok(body: String) -> HttpResponse {
    const JSON: HeaderValue = HeaderValue::from_static("application/json");
    let mut response = HttpResponse::Ok().body(body);
    response.headers_mut().insert(CONTENT_TYPE, JSON);
    response
}

/// RFC 3339 in UTC to the second, as every body writes times.
fn rfc3339_string(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn rfc3339<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
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

impl MeBody {
    /// The body as `serde_json` writes it, written directly: programs ask
    /// `GET /v1/me` who they are, and serde took a tenth of its instructions.
    pub fn to_json(&self) -> String {
        let (user, principal) = (&self.user, &self.principal);
        let mut out = String::with_capacity(384 + user.name.len() + user.email.len());
        out.push_str("{\"user\":{\"id\":");
        push_string(&mut out, &user.id);
        out.push_str(",\"name\":");
        push_string(&mut out, &user.name);
        out.push_str(",\"email\":");
        push_string(&mut out, &user.email);
        out.push_str(",\"email_verified\":");
        out.push_str(if user.email_verified { "true" } else { "false" });
        for (name, value) in [
            ("company", &user.company),
            ("country", &user.country),
            ("phone", &user.phone),
        ] {
            out.push_str(",\"");
            out.push_str(name);
            out.push_str("\":");
            match value {
                Some(value) => push_string(&mut out, value),
                None => out.push_str("null"),
            }
        }
        out.push_str(",\"plan\":");
        push_string(&mut out, &user.plan);
        out.push_str(",\"mfa_enabled\":");
        out.push_str(if user.mfa_enabled { "true" } else { "false" });
        out.push_str(",\"created_at\":");
        push_string(&mut out, &rfc3339_string(&user.created_at));
        out.push_str("},\"principal\":{\"type\":");
        push_string(&mut out, principal.kind);
        out.push_str(",\"scopes\":");
        with_scope_texts(principal.scopes, |texts| out.push_str(&texts.json));
        for (name, value) in [
            ("session_id", &principal.session_id),
            ("api_key_id", &principal.api_key_id),
        ] {
            if let Some(value) = value {
                out.push_str(",\"");
                out.push_str(name);
                out.push_str("\":");
                push_string(&mut out, value);
            }
        }
        out.push_str("}}");
        out
    }
}

/// Appends `text` as a JSON string.
fn push_string(out: &mut String, text: &str) {
    out.push('"');
    crate::logging::push_escaped(out, text);
    out.push('"');
}

/// The texts of a set of scopes in the gateway's answer and in
/// `GET /v1/me`: each is the same for every request with that set.
pub(crate) struct ScopeTexts {
    /// The JSON array of the names: `["agents:read","chat:write"]`.
    pub json: String,
    /// The names separated by spaces, for `X-Auth-Scopes`.
    pub header: HeaderValue,
}

impl ScopeTexts {
    fn of(set: ScopeSet) -> Self {
        let mut json = String::from("[");
        for (i, scope) in set.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            push_string(&mut json, scope.as_str());
        }
        json.push(']');
        // Scope names are visible ASCII: never the empty fallback.
        let header = HeaderValue::try_from(set.to_string()).unwrap_or(HeaderValue::from_static(""));
        Self { json, header }
    }
}

/// Calls `f` with the texts of `set`, made once per set and thread (there
/// are 1,024 sets of the ten scopes).
pub(crate) fn with_scope_texts<R>(set: ScopeSet, f: impl FnOnce(&ScopeTexts) -> R) -> R {
    thread_local! {
        static TEXTS: RefCell<Vec<Option<ScopeTexts>>> = const { RefCell::new(Vec::new()) };
    }
    let index = Scope::ALL.iter().enumerate().fold(0, |index, (bit, scope)| {
        index | usize::from(set.contains(*scope)) << bit
    });
    TEXTS.with(|texts| {
        let mut texts = texts.borrow_mut();
        if texts.is_empty() {
            texts.resize_with(1 << Scope::ALL.len(), || None);
        }
        f(texts[index].get_or_insert_with(|| ScopeTexts::of(set)))
    })
}

/// A set of scopes as serde writes it: an array of their names.
fn scope_names<S: Serializer>(set: &ScopeSet, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(set.iter().map(|scope| scope.as_str()))
}

fn rfc3339_opt<S: Serializer>(at: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => rfc3339(at, s),
        None => s.serialize_none(),
    }
}

/// An API key as shown to its owner; `key` only when just created or rotated.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ApiKeyBody {
    /// The key's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The first 11 characters of the key (`cs_` + public id).
    pub prefix: String,
    /// What it may do.
    pub scopes: Vec<String>,
    /// `active`, `revoked` or `expired`.
    pub status: &'static str,
    /// Creation time.
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    /// When it stops working, or `null`.
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<DateTime<Utc>>,
    /// Last use (written within 5 seconds of a use), or `null`.
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked or rotated away, or `null`.
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<DateTime<Utc>>,
    /// The whole key: only in the answer that made it. Store it now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl ApiKeyBody {
    /// A key as listed (without the secret).
    pub fn new(key: &convosphere_domain::api_key::ApiKey, now: DateTime<Utc>) -> Self {
        Self {
            id: key.id.to_string(),
            name: key.name.clone(),
            prefix: key.prefix(),
            scopes: key.scopes.to_strings(),
            status: key.status(now).as_str(),
            created_at: key.created_at,
            expires_at: key.expires_at,
            last_used_at: key.last_used_at,
            revoked_at: key.revoked_at,
            key: None,
        }
    }
}

/// `GET /v1/api-keys`
#[derive(Serialize, utoipa::ToSchema)]
pub struct ApiKeyList {
    /// Every key, newest first.
    pub api_keys: Vec<ApiKeyBody>,
}

/// One of the ten scopes (for the OpenAPI document; the domain's `Scope` parses them).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub enum ScopeName {
    /// Read agents.
    #[schema(rename = "agents:read")]
    AgentsRead,
    /// Change agents.
    #[schema(rename = "agents:write")]
    AgentsWrite,
    /// Read chats.
    #[schema(rename = "chat:read")]
    ChatRead,
    /// Chat.
    #[schema(rename = "chat:write")]
    ChatWrite,
    /// Read knowledge bases.
    #[schema(rename = "knowledge:read")]
    KnowledgeRead,
    /// Change knowledge bases.
    #[schema(rename = "knowledge:write")]
    KnowledgeWrite,
    /// Read integrations.
    #[schema(rename = "integrations:read")]
    IntegrationsRead,
    /// Change integrations.
    #[schema(rename = "integrations:write")]
    IntegrationsWrite,
    /// Read webhooks.
    #[schema(rename = "webhooks:read")]
    WebhooksRead,
    /// Change webhooks.
    #[schema(rename = "webhooks:write")]
    WebhooksWrite,
}

/// `POST /v1/api-keys`
#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateApiKeyBody {
    /// 1–100 characters.
    #[schema(required = true, value_type = String, min_length = 1, max_length = 100)]
    pub name: Option<String>,
    /// A non-empty subset of the ten scopes.
    #[schema(required = true, value_type = Vec<ScopeName>, min_items = 1)]
    pub scopes: Option<Vec<String>>,
    /// RFC 3339, in the future; absent or `null` for no expiry.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<String>,
}

/// `POST /v1/api-keys/{id}/rotate`
#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct RotateApiKeyBody {
    /// RFC 3339, in the future; absent or `null` for no expiry.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<String>,
}

/// `GET /v1/authz`
#[derive(Serialize, utoipa::ToSchema)]
pub struct AuthzBody {
    /// The account.
    pub user_id: String,
    /// `user` or `api_key`.
    pub principal: &'static str,
    /// The scopes the credential holds.
    #[serde(serialize_with = "scope_names")]
    #[schema(value_type = Vec<String>)]
    pub scopes: ScopeSet,
    /// The account's plan.
    pub plan: &'static str,
}

impl AuthzBody {
    /// The body as `serde_json` writes it, written directly: it is the
    /// answer to every request of the platform.
    pub fn to_json(&self) -> String {
        with_scope_texts(self.scopes, |texts| self.to_json_with(&texts.json))
    }

    /// [`Self::to_json`] with the `scopes` array's text at hand.
    pub(crate) fn to_json_with(&self, scopes_json: &str) -> String {
        let mut out =
            String::with_capacity(64 + self.user_id.len() + self.principal.len() + scopes_json.len() + self.plan.len());
        out.push_str("{\"user_id\":");
        push_string(&mut out, &self.user_id);
        out.push_str(",\"principal\":");
        push_string(&mut out, self.principal);
        out.push_str(",\"scopes\":");
        out.push_str(scopes_json);
        out.push_str(",\"plan\":");
        push_string(&mut out, self.plan);
        out.push('}');
        out
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

impl OAuthCodeBody {
    /// The second factor sent with the code (empty strings are none).
    pub fn second_factor(&mut self) -> SecondFactor {
        SecondFactor {
            totp_code: self.totp_code.take().filter(|c| !c.is_empty()).map(Redacted),
            recovery_code: self.recovery_code.take().filter(|c| !c.is_empty()).map(Redacted),
        }
    }
}

/// The recovery codes, shown this once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RecoveryCodesBody {
    /// Ten codes; each logs in once instead of a TOTP code.
    pub recovery_codes: Vec<String>,
}

/// `DELETE /v1/me/mfa/totp`
#[derive(Deserialize, utoipa::ToSchema)]
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

#[cfg(test)]
mod tests {
    use super::*;
    use convosphere_domain::Plan;
    use proptest::prelude::*;

    /// Every one of the 1,024 sets, asked twice (made, then kept), gives
    /// its names in the header and in the JSON array.
    #[test]
    fn the_texts_of_every_scope_set_name_its_scopes() {
        for round in 0..2 {
            for mask in 0..(1usize << Scope::ALL.len()) {
                let set: ScopeSet = Scope::ALL
                    .iter()
                    .enumerate()
                    .filter(|(bit, _)| mask & (1 << bit) != 0)
                    .map(|(_, scope)| *scope)
                    .collect();
                let names: Vec<&str> = set.iter().map(|scope| scope.as_str()).collect();
                with_scope_texts(set, |texts| {
                    assert_eq!(texts.header.to_str().unwrap(), names.join(" "), "round {round}");
                    assert_eq!(serde_json::from_str::<Vec<String>>(&texts.json).unwrap(), names);
                });
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// `GET /v1/me`'s body, written by hand, is the one serde writes,
        /// whatever the account's fields hold.
        #[test]
        fn the_me_body_is_what_serde_writes(
            name in any::<String>(),
            email in "[a-z\"\\\\]{1,10}@[a-z]{1,8}\\.example",
            company in proptest::option::of(any::<String>()),
            country in proptest::option::of("[\\x00-\\x7f]{0,12}"),
            phone in proptest::option::of(any::<String>()),
            flags in any::<(bool, bool)>(),
            plan in proptest::sample::select(Plan::ALL.to_vec()),
            seconds in 0i64..4_102_444_800,
            scopes in proptest::sample::subsequence(Scope::ALL.to_vec(), 0..=10),
            session in proptest::option::of(Just(uuid::Uuid::new_v4().to_string())),
            key in proptest::option::of(Just(uuid::Uuid::new_v4().to_string())),
        ) {
            let body = MeBody {
                user: UserBody {
                    id: uuid::Uuid::new_v4().to_string(),
                    name,
                    email,
                    email_verified: flags.0,
                    company,
                    country,
                    phone,
                    plan: plan.as_str().to_owned(),
                    mfa_enabled: flags.1,
                    created_at: DateTime::from_timestamp(seconds, 0).unwrap(),
                },
                principal: PrincipalBody {
                    kind: if key.is_some() { "api_key" } else { "user" },
                    scopes: scopes.iter().copied().collect(),
                    session_id: session,
                    api_key_id: key,
                },
            };
            prop_assert_eq!(body.to_json(), serde_json::to_string(&body).unwrap());
        }
    }
}
