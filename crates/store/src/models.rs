//! Rows as stored, and their conversions to and from domain values.

use crate::error::StoreError;
use crate::schema::{
    api_keys, invalidations, oauth_identities, oauth_login_codes, oauth_pending_logins, one_time_tokens,
    refresh_tokens, sessions, users,
};
use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use convosphere_domain::api_key::{ApiKey, ApiKeyId, SecretHash};
use convosphere_domain::oauth::{LinkRequest, LinkedIdentity, PendingLogin, Provider};
use convosphere_domain::ports::Invalidation;
use convosphere_domain::profile::ProfileUpdate;
use convosphere_domain::{
    AuthMethod, Email, EndReason, NewUser, PasswordHash, Session, SessionId, TokenHash, User, UserId,
};
use diesel::prelude::*;

/// A timestamp as stored: UTC, microsecond precision (PostgreSQL's), so that
/// both backends give back exactly what they were given.
pub(crate) fn db_time(at: DateTime<Utc>) -> NaiveDateTime {
    at.naive_utc().trunc_subsecs(6)
}

fn utc(at: NaiveDateTime) -> DateTime<Utc> {
    at.and_utc()
}

fn parse_uuid(text: &str) -> Result<uuid::Uuid, StoreError> {
    uuid::Uuid::parse_str(text).map_err(|e| StoreError::corrupt(format_args!("id {text:?}: {e}")))
}

pub(crate) fn user_id(text: &str) -> Result<UserId, StoreError> {
    parse_uuid(text).map(UserId::from_uuid)
}

fn session_id(text: &str) -> Result<SessionId, StoreError> {
    parse_uuid(text).map(SessionId::from_uuid)
}

/// A row of `users`.
#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = users, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub(crate) struct UserRow {
    pub id: String,
    pub name: String,
    pub email: String,
    pub email_verified: bool,
    pub password_hash: Option<String>,
    pub company: Option<String>,
    pub country: Option<String>,
    pub phone: Option<String>,
    pub plan: String,
    pub mfa_enabled: bool,
    pub suspended: bool,
    pub failed_logins: i32,
    pub locked_until: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl UserRow {
    pub fn new(user: &NewUser) -> Self {
        let created_at = db_time(user.created_at);
        Self {
            id: user.id.to_string(),
            name: user.name.clone(),
            email: user.email.as_str().to_owned(),
            email_verified: user.email_verified,
            password_hash: user.password_hash.as_ref().map(|h| h.as_str().to_owned()),
            company: user.company.clone(),
            country: user.country.clone(),
            phone: user.phone.clone(),
            plan: user.plan.as_str().to_owned(),
            mfa_enabled: false,
            suspended: false,
            failed_logins: 0,
            locked_until: None,
            created_at,
            updated_at: created_at,
        }
    }
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;

    fn try_from(row: UserRow) -> Result<Self, Self::Error> {
        Ok(User {
            id: user_id(&row.id)?,
            name: row.name,
            email: Email::parse(&row.email)
                .map_err(|e| StoreError::corrupt(format_args!("e-mail of {}: {e}", row.id)))?,
            email_verified: row.email_verified,
            password_hash: row.password_hash.map(PasswordHash::from_phc),
            company: row.company,
            country: row.country,
            phone: row.phone,
            plan: row.plan.parse().map_err(StoreError::corrupt)?,
            mfa_enabled: row.mfa_enabled,
            suspended: row.suspended,
            failed_logins: u32::try_from(row.failed_logins).map_err(StoreError::corrupt)?,
            locked_until: row.locked_until.map(utc),
            created_at: utc(row.created_at),
        })
    }
}

/// A profile change: `None` leaves a column alone, `Some(None)` sets NULL.
#[derive(Debug, AsChangeset)]
#[diesel(table_name = users)]
pub(crate) struct ProfileChanges {
    name: Option<String>,
    company: Option<Option<String>>,
    country: Option<Option<String>>,
    phone: Option<Option<String>>,
    // Always set, so that the change set is never empty.
    updated_at: NaiveDateTime,
}

impl ProfileChanges {
    pub fn new(update: &ProfileUpdate, now: DateTime<Utc>) -> Self {
        Self {
            name: update.name.clone(),
            company: update.company.clone(),
            country: update.country.clone(),
            phone: update.phone.clone(),
            updated_at: db_time(now),
        }
    }
}

/// A row of `sessions`.
#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = sessions, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub(crate) struct SessionRow {
    pub id: String,
    pub user_id: String,
    pub created_at: NaiveDateTime,
    pub last_active_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub ended_at: Option<NaiveDateTime>,
    pub end_reason: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub auth_time: NaiveDateTime,
    pub amr: String,
}

/// `sessions.amr`: the methods' RFC 8176 names, space-separated.
pub(crate) fn amr_text(amr: &[AuthMethod]) -> String {
    amr.iter().map(AuthMethod::as_str).collect::<Vec<_>>().join(" ")
}

impl SessionRow {
    pub fn new(session: &Session) -> Self {
        Self {
            id: session.id.to_string(),
            user_id: session.user_id.to_string(),
            created_at: db_time(session.created_at),
            last_active_at: db_time(session.last_active_at),
            expires_at: db_time(session.expires_at),
            ended_at: session.ended_at.map(db_time),
            end_reason: session.end_reason.map(|r| r.as_str().to_owned()),
            ip: session.ip.clone(),
            user_agent: session.user_agent.clone(),
            auth_time: db_time(session.auth_time),
            amr: amr_text(&session.amr),
        }
    }

    /// Whether the session counts as active at `now` (see `SessionRepository::create_session`).
    pub fn is_active(&self, now: NaiveDateTime, idle_cutoff: NaiveDateTime) -> bool {
        self.ended_at.is_none() && self.expires_at > now && self.last_active_at > idle_cutoff
    }
}

impl TryFrom<SessionRow> for Session {
    type Error = StoreError;

    fn try_from(row: SessionRow) -> Result<Self, Self::Error> {
        Ok(Session {
            id: session_id(&row.id)?,
            user_id: user_id(&row.user_id)?,
            created_at: utc(row.created_at),
            last_active_at: utc(row.last_active_at),
            expires_at: utc(row.expires_at),
            ended_at: row.ended_at.map(utc),
            end_reason: row
                .end_reason
                .as_deref()
                .map(str::parse::<EndReason>)
                .transpose()
                .map_err(StoreError::corrupt)?,
            ip: row.ip,
            user_agent: row.user_agent,
            auth_time: utc(row.auth_time),
            amr: row.amr.split_whitespace().filter_map(AuthMethod::parse).collect(),
        })
    }
}

/// Converts rows, failing on the first unreadable one.
pub(crate) fn sessions_from_rows(rows: Vec<SessionRow>) -> Result<Vec<Session>, StoreError> {
    rows.into_iter().map(Session::try_from).collect()
}

/// Parses stored session ids.
pub(crate) fn session_ids(ids: Vec<String>) -> Result<Vec<SessionId>, StoreError> {
    ids.iter().map(|id| session_id(id)).collect()
}

/// A new row of `refresh_tokens`.
#[derive(Debug, Insertable)]
#[diesel(table_name = refresh_tokens)]
pub(crate) struct NewRefreshToken {
    pub hash: String,
    pub session_id: String,
    pub created_at: NaiveDateTime,
}

/// A new row of `one_time_tokens`.
#[derive(Debug, Insertable)]
#[diesel(table_name = one_time_tokens)]
pub(crate) struct NewOneTimeToken {
    pub hash: String,
    pub user_id: String,
    pub kind: String,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
}

/// Lower-case hex of 32 bytes, as stored.
fn to_hex(bytes: &[u8; 32]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

/// The 32 bytes of 64 hex digits.
pub(crate) fn from_hex(text: &str) -> Option<[u8; 32]> {
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    fn nibble(digit: u8) -> Option<u8> {
        char::from(digit).to_digit(16).and_then(|n| u8::try_from(n).ok())
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

/// A row of `api_keys`.
#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_keys, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub(crate) struct ApiKeyRow {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub public_id: String,
    pub secret_hash: String,
    pub scopes: String,
    pub created_at: NaiveDateTime,
    pub expires_at: Option<NaiveDateTime>,
    pub last_used_at: Option<NaiveDateTime>,
    pub revoked_at: Option<NaiveDateTime>,
}

impl ApiKeyRow {
    pub fn new(key: &ApiKey) -> Self {
        Self {
            id: key.id.to_string(),
            user_id: key.user_id.to_string(),
            name: key.name.clone(),
            public_id: key.public_id.clone(),
            secret_hash: to_hex(&key.secret_hash.0),
            scopes: key.scopes.to_string(),
            created_at: db_time(key.created_at),
            expires_at: key.expires_at.map(db_time),
            last_used_at: key.last_used_at.map(db_time),
            revoked_at: key.revoked_at.map(db_time),
        }
    }
}

impl TryFrom<ApiKeyRow> for ApiKey {
    type Error = StoreError;

    fn try_from(row: ApiKeyRow) -> Result<Self, Self::Error> {
        Ok(ApiKey {
            id: ApiKeyId::from_uuid(parse_uuid(&row.id)?),
            user_id: user_id(&row.user_id)?,
            secret_hash: SecretHash(
                from_hex(&row.secret_hash)
                    .ok_or_else(|| StoreError::corrupt(format_args!("secret hash of API key {}", row.id)))?,
            ),
            scopes: row
                .scopes
                .parse()
                .map_err(|e| StoreError::corrupt(format_args!("scopes of API key {}: {e}", row.id)))?,
            name: row.name,
            public_id: row.public_id,
            created_at: utc(row.created_at),
            expires_at: row.expires_at.map(utc),
            last_used_at: row.last_used_at.map(utc),
            revoked_at: row.revoked_at.map(utc),
        })
    }
}

/// Converts rows, failing on the first unreadable one.
pub(crate) fn api_keys_from_rows(rows: Vec<ApiKeyRow>) -> Result<Vec<ApiKey>, StoreError> {
    rows.into_iter().map(ApiKey::try_from).collect()
}

/// A stored provider name.
pub(crate) fn provider(text: &str) -> Result<Provider, StoreError> {
    text.parse().map_err(StoreError::corrupt)
}

fn token_hash(text: &str, what: &str) -> Result<TokenHash, StoreError> {
    from_hex(text)
        .map(TokenHash)
        .ok_or_else(|| StoreError::corrupt(format_args!("{what} is not a SHA-256 in hex")))
}

/// A row of `oauth_identities`.
#[derive(Debug, Insertable)]
#[diesel(table_name = oauth_identities)]
pub(crate) struct NewOAuthIdentity {
    pub provider: &'static str,
    pub subject: String,
    pub user_id: String,
    pub email: String,
    pub created_at: NaiveDateTime,
}

impl NewOAuthIdentity {
    pub fn new(identity: &LinkedIdentity) -> Self {
        Self {
            provider: identity.provider.as_str(),
            subject: identity.subject.clone(),
            user_id: identity.user_id.to_string(),
            email: identity.email.as_str().to_owned(),
            created_at: db_time(identity.created_at),
        }
    }
}

/// A row of `oauth_pending_logins`.
#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = oauth_pending_logins, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub(crate) struct PendingLoginRow {
    pub state_hash: String,
    pub provider: String,
    pub browser_hash: String,
    pub sealed_verifier: String,
    pub nonce: String,
    pub redirect_to: Option<String>,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub link_user_id: Option<String>,
    pub link_session_id: Option<String>,
}

impl PendingLoginRow {
    pub fn new(pending: &PendingLogin) -> Self {
        Self {
            state_hash: pending.state.to_hex(),
            provider: pending.provider.as_str().to_owned(),
            browser_hash: pending.browser.to_hex(),
            sealed_verifier: pending.sealed_verifier.clone(),
            nonce: pending.nonce.clone(),
            redirect_to: pending.redirect_to.clone(),
            created_at: db_time(pending.created_at),
            expires_at: db_time(pending.expires_at),
            link_user_id: pending.link.map(|link| link.user.to_string()),
            link_session_id: pending.link.map(|link| link.session.to_string()),
        }
    }
}

impl TryFrom<PendingLoginRow> for PendingLogin {
    type Error = StoreError;

    fn try_from(row: PendingLoginRow) -> Result<Self, Self::Error> {
        Ok(PendingLogin {
            state: token_hash(&row.state_hash, "a pending login's state hash")?,
            provider: provider(&row.provider)?,
            browser: token_hash(&row.browser_hash, "a pending login's browser hash")?,
            sealed_verifier: row.sealed_verifier,
            nonce: row.nonce,
            redirect_to: row.redirect_to,
            link: match (row.link_user_id, row.link_session_id) {
                (Some(user), Some(session)) => Some(LinkRequest {
                    user: user_id(&user)?,
                    session: session_id(&session)?,
                }),
                _ => None,
            },
            created_at: utc(row.created_at),
            expires_at: utc(row.expires_at),
        })
    }
}

/// A new row of `oauth_login_codes`.
#[derive(Debug, Insertable)]
#[diesel(table_name = oauth_login_codes)]
pub(crate) struct NewLoginCode {
    pub hash: String,
    pub user_id: String,
    pub provider: &'static str,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
}

/// `invalidations.kind` of [`Invalidation::Session`].
const SESSION: &str = "session";
/// `invalidations.kind` of [`Invalidation::User`].
const USER: &str = "user";
/// `invalidations.kind` of [`Invalidation::ApiKey`].
const API_KEY: &str = "api_key";

/// A new row of `invalidations` (the id comes from the database).
#[derive(Debug, Insertable)]
#[diesel(table_name = invalidations)]
pub(crate) struct NewInvalidation {
    kind: &'static str,
    subject: String,
    created_at: NaiveDateTime,
}

impl NewInvalidation {
    /// Stamped with the writer's clock: the column only serves purging, and
    /// some changes (plan, suspension) are given no time by their port.
    fn new(kind: &'static str, subject: String) -> Self {
        Self {
            kind,
            subject,
            created_at: db_time(Utc::now()),
        }
    }

    /// A session ended; `id` as stored.
    pub fn session(id: String) -> Self {
        Self::new(SESSION, id)
    }

    /// One row per ended session.
    pub fn sessions(ids: &[String]) -> Vec<Self> {
        ids.iter().cloned().map(Self::session).collect()
    }

    /// An account's plan or suspension changed; `id` as stored.
    pub fn user(id: String) -> Self {
        Self::new(USER, id)
    }

    /// An API key stopped working, by its public id.
    pub fn api_key(public_id: String) -> Self {
        Self::new(API_KEY, public_id)
    }
}

/// A row of `invalidations`, as the feed reads it.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = invalidations, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub(crate) struct InvalidationRow {
    pub id: i64,
    pub kind: String,
    pub subject: String,
}

impl TryFrom<InvalidationRow> for Invalidation {
    type Error = StoreError;

    fn try_from(row: InvalidationRow) -> Result<Self, Self::Error> {
        Ok(match row.kind.as_str() {
            SESSION => Invalidation::Session(session_id(&row.subject)?),
            USER => Invalidation::User(user_id(&row.subject)?),
            API_KEY => Invalidation::ApiKey(row.subject),
            other => {
                return Err(StoreError::corrupt(format_args!(
                    "invalidation {} has the unknown kind {other:?}",
                    row.id
                )))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_garbage() {
        let bytes: [u8; 32] = std::array::from_fn(|i| (i * 37) as u8);
        let text = to_hex(&bytes);
        assert_eq!(text.len(), 64);
        assert_eq!(text, text.to_lowercase());
        assert_eq!(from_hex(&text), Some(bytes));
        assert_eq!(from_hex(&text.to_uppercase()), Some(bytes));
        assert_eq!(from_hex(&text[..62]), None);
        assert_eq!(from_hex(&format!("{}zz", &text[..62])), None);
        assert_eq!(from_hex(&format!("{}é", &text[..62])), None);
        assert_eq!(from_hex(&format!("+f{}", &text[2..])), None);
    }
}
