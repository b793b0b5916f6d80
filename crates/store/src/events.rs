//! [`EventRepository`] for [`Store`]: the audit trail.

use crate::connection::{with_conn, Dialect};
use crate::error::StoreError;
use crate::models::{db_time, user_id};
use crate::schema::{security_events, unknown_login_attempts};
use crate::Store;
use chrono::{DateTime, NaiveDateTime, Utc};
use convosphere_domain::ports::EventRepository;
use convosphere_domain::{EventId, EventKind, InfraError, SecurityEvent, UserId};
use diesel::prelude::*;

type EventRow = (
    String,
    String,
    String,
    NaiveDateTime,
    Option<String>,
    Option<String>,
    String,
);

/// The details as a JSON array of `[key, value]` pairs: it keeps their order.
fn details_json(details: &[(String, String)]) -> String {
    serde_json::to_string(details).unwrap_or_else(|_| "[]".into())
}

fn event_from_row(row: EventRow) -> Result<SecurityEvent, StoreError> {
    let (id, user, kind, at, ip, user_agent, details) = row;
    let corrupt = |what: &str| StoreError::Corrupt(format!("security_events.{what} of {id}"));
    let details: Vec<(String, String)> = serde_json::from_str(&details).map_err(|_| corrupt("details"))?;
    Ok(SecurityEvent {
        id: id.parse::<EventId>().map_err(|_| corrupt("id"))?,
        user_id: user_id(&user)?,
        kind: kind.parse::<EventKind>().map_err(|_| corrupt("kind"))?,
        at: at.and_utc(),
        ip,
        user_agent,
        details,
    })
}

/// A new row of `security_events`.
#[derive(Debug, Insertable)]
#[diesel(table_name = security_events)]
pub(crate) struct NewEventRow {
    id: String,
    user_id: String,
    kind: &'static str,
    at: NaiveDateTime,
    ip: Option<String>,
    user_agent: Option<String>,
    details: String,
}

impl NewEventRow {
    pub(crate) fn new(event: &SecurityEvent) -> Self {
        Self {
            id: event.id.to_string(),
            user_id: event.user_id.to_string(),
            kind: event.kind.as_str(),
            at: db_time(event.at),
            ip: event.ip.clone(),
            user_agent: event.user_agent.clone(),
            details: details_json(&event.details),
        }
    }
}

impl EventRepository for Store {
    async fn record_event(&self, event: &SecurityEvent) -> Result<(), InfraError> {
        let row = NewEventRow::new(event);
        with_conn!(self, |conn| conn.write(|conn| {
            diesel::insert_into(security_events::table).values(&row).execute(conn)?;
            Ok(())
        }))?;
        Ok(())
    }

    async fn events(
        &self,
        user: UserId,
        before: Option<EventId>,
        limit: u32,
    ) -> Result<Vec<SecurityEvent>, InfraError> {
        let user = user.to_string();
        let before = before.map(|id| id.to_string());
        let limit = i64::from(limit);
        let rows: Vec<EventRow> = with_conn!(self, |conn| {
            let mut query = security_events::table
                .filter(security_events::user_id.eq(user))
                .order(security_events::id.desc())
                .limit(limit)
                .into_boxed();
            if let Some(before) = before {
                // UUIDs in canonical lower-case text sort like the UUIDs.
                query = query.filter(security_events::id.lt(before));
            }
            Ok(query
                .select((
                    security_events::id,
                    security_events::user_id,
                    security_events::kind,
                    security_events::at,
                    security_events::ip,
                    security_events::user_agent,
                    security_events::details,
                ))
                .load(conn)?)
        })?;
        Ok(rows.into_iter().map(event_from_row).collect::<Result<_, _>>()?)
    }
}

impl Store {
    /// Deletes the security events and the unknown-address login attempts
    /// older than `before` (the retention); how many rows went.
    pub async fn purge_events(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
        let before = db_time(before);
        with_conn!(self, |conn| conn.write(|conn| {
            let events = diesel::delete(security_events::table.filter(security_events::at.lt(before))).execute(conn)?;
            let unknown = unknown_login_attempts::table.filter(unknown_login_attempts::at.lt(before));
            Ok(events + diesel::delete(unknown).execute(conn)?)
        }))
    }

    /// How many logins were refused for an address without an account
    /// since `since` (a sign of credential stuffing when it climbs).
    pub async fn unknown_login_attempts(&self, since: DateTime<Utc>) -> Result<i64, StoreError> {
        let since = db_time(since);
        with_conn!(self, |conn| Ok(unknown_login_attempts::table
            .filter(unknown_login_attempts::at.ge(since))
            .count()
            .get_result(conn)?))
    }
}
