//! Rows as stored, and their conversions to and from domain values.

use crate::error::StoreError;
use crate::schema::{one_time_tokens, refresh_tokens, sessions, users};
use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use convosphere_domain::profile::ProfileUpdate;
use convosphere_domain::{Email, EndReason, NewUser, PasswordHash, Session, SessionId, User, UserId};
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
