//! [`AccountRepository`] for [`Store`]: changes of address and the deletion
//! of accounts, each one transaction.

use crate::connection::{with_conn, Dialect};
use crate::error::StoreError;
use crate::events::NewEventRow;
use crate::models::{db_time, session_ids, NewInvalidation, UserRow};
use crate::schema::{
    api_keys, email_changes, key_networks, one_time_tokens, security_events, sessions, usage_alerts, usage_daily,
    usage_hourly, users,
};
use crate::sessions::end_sessions_but;
use crate::Store;
use chrono::{DateTime, NaiveDateTime, Utc};
use convosphere_domain::account::{DeletedAccount, EmailChangeOutcome, EmailChangeRequest, PendingEmailChange};
use convosphere_domain::ports::AccountRepository;
use convosphere_domain::{Email, EndReason, InfraError, SecurityEvent, TokenHash, User, UserId};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

fn email(text: &str) -> Result<Email, StoreError> {
    Email::parse(text).map_err(|e| StoreError::corrupt(format_args!("address {text:?}: {e}")))
}

/// What the confirming transaction found, before its rows become domain values.
enum Confirmed {
    Invalid,
    Taken,
    Changed {
        row: Box<UserRow>,
        old_email: String,
        ended: Vec<String>,
    },
}

impl AccountRepository for Store {
    async fn request_email_change(&self, request: &EmailChangeRequest) -> Result<(), InfraError> {
        let row = (
            email_changes::hash.eq(request.token.to_hex()),
            email_changes::user_id.eq(request.user.to_string()),
            email_changes::new_email.eq(request.new_email.as_str().to_owned()),
            email_changes::session_id.eq(request.session.map(|s| s.to_string())),
            email_changes::created_at.eq(db_time(request.created_at)),
            email_changes::expires_at.eq(db_time(request.expires_at)),
        );
        let user = request.user.to_string();
        with_conn!(self, |conn| conn.write_transaction(|conn| {
            // Under the account's lock: of two parallel requests the later
            // one still removes the earlier, and none outlives a deletion.
            if conn.lock_user(&user)?.is_none() {
                return Ok(());
            }
            diesel::delete(email_changes::table.filter(email_changes::user_id.eq(&user))).execute(conn)?;
            diesel::insert_into(email_changes::table).values(row).execute(conn)?;
            Ok(())
        }))?;
        Ok(())
    }

    async fn pending_email_change(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<Option<PendingEmailChange>, InfraError> {
        let (user, now) = (user.to_string(), db_time(now));
        let row: Option<(String, NaiveDateTime)> = with_conn!(self, |conn| Ok(email_changes::table
            .filter(email_changes::user_id.eq(user))
            .filter(email_changes::used_at.is_null())
            .filter(email_changes::expires_at.gt(now))
            .select((email_changes::new_email, email_changes::expires_at))
            .first(conn)
            .optional()?))?;
        let Some((new_email, expires_at)) = row else {
            return Ok(None);
        };
        Ok(Some(PendingEmailChange {
            new_email: email(&new_email)?,
            expires_at: expires_at.and_utc(),
        }))
    }

    async fn confirm_email_change(
        &self,
        token: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<EmailChangeOutcome, InfraError> {
        let (hash, now) = (token.to_hex(), db_time(now));
        let confirmed = with_conn!(self, |conn| conn.write_transaction(|conn| {
            // One conditional UPDATE takes the link: of parallel calls only
            // one gets its row back (as for the other one-time tokens).
            let taken: Option<(String, String, Option<String>)> = diesel::update(
                email_changes::table
                    .filter(email_changes::hash.eq(&hash))
                    .filter(email_changes::used_at.is_null())
                    .filter(email_changes::expires_at.gt(now)),
            )
            .set(email_changes::used_at.eq(Some(now)))
            .returning((
                email_changes::user_id,
                email_changes::new_email,
                email_changes::session_id,
            ))
            .get_result(conn)
            .optional()?;
            let Some((user, new_email, asked_by)) = taken else {
                return Ok(Confirmed::Invalid);
            };
            let Some(old) = conn.lock_user(&user)? else {
                return Ok(Confirmed::Invalid);
            };
            // In a savepoint: an address taken meanwhile undoes the update
            // alone, and the link stays used.
            let changed = conn.transaction(|conn| {
                diesel::update(users::table.find(&user))
                    .set((
                        users::email.eq(&new_email),
                        users::email_verified.eq(true),
                        users::updated_at.eq(now),
                    ))
                    .returning(UserRow::as_returning())
                    .get_result(conn)
            });
            let row = match changed {
                Ok(row) => row,
                Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
                    return Ok(Confirmed::Taken);
                }
                Err(e) => return Err(e.into()),
            };
            // The links mailed to the old address die with it.
            diesel::delete(one_time_tokens::table.filter(one_time_tokens::user_id.eq(&user))).execute(conn)?;
            diesel::delete(email_changes::table.filter(email_changes::user_id.eq(&user))).execute(conn)?;
            // No session has the nil id: "all but none" when no session asked.
            let keep = asked_by.unwrap_or_else(|| uuid::Uuid::nil().to_string());
            let ended = end_sessions_but!(conn, &user, &keep, now, EndReason::EmailChanged);
            let mut announced = NewInvalidation::sessions(&ended);
            announced.push(NewInvalidation::user(user));
            conn.append_invalidations(&announced)?;
            Ok(Confirmed::Changed {
                row: Box::new(row),
                old_email: old.email,
                ended,
            })
        }))?;
        Ok(match confirmed {
            Confirmed::Invalid => EmailChangeOutcome::Invalid,
            Confirmed::Taken => EmailChangeOutcome::Taken,
            Confirmed::Changed { row, old_email, ended } => EmailChangeOutcome::Changed {
                user: Box::new(User::try_from(*row)?),
                old_email: email(&old_email)?,
                ended: session_ids(ended)?,
            },
        })
    }

    async fn delete_account(&self, user: UserId, event: &SecurityEvent) -> Result<Option<DeletedAccount>, InfraError> {
        let user = user.to_string();
        let event = NewEventRow::new(event);
        let deleted = with_conn!(self, |conn| conn.write_transaction(|conn| {
            if conn.lock_user(&user)?.is_none() {
                return Ok(None);
            }
            let live: Vec<String> = sessions::table
                .filter(sessions::user_id.eq(&user))
                .filter(sessions::ended_at.is_null())
                .select(sessions::id)
                .load(conn)?;
            let keys: Vec<(String, String)> = api_keys::table
                .filter(api_keys::user_id.eq(&user))
                .select((api_keys::id, api_keys::public_id))
                .load(conn)?;
            let key_ids: Vec<&String> = keys.iter().map(|(id, _)| id).collect();
            // What refers to the account without a foreign key.
            diesel::delete(key_networks::table.filter(key_networks::api_key_id.eq_any(&key_ids))).execute(conn)?;
            diesel::delete(usage_alerts::table.filter(usage_alerts::api_key_id.eq_any(&key_ids))).execute(conn)?;
            diesel::delete(usage_hourly::table.filter(usage_hourly::user_id.eq(&user))).execute(conn)?;
            diesel::delete(usage_daily::table.filter(usage_daily::user_id.eq(&user))).execute(conn)?;
            // The audit trail stays, without what would tell who it was.
            diesel::update(security_events::table.filter(security_events::user_id.eq(&user)))
                .set((
                    security_events::ip.eq(None::<String>),
                    security_events::user_agent.eq(None::<String>),
                    security_events::details.eq("[]"),
                ))
                .execute(conn)?;
            diesel::insert_into(security_events::table)
                .values(&event)
                .execute(conn)?;
            // Sessions with their refresh tokens, keys, passkeys, provider
            // links, 2FA, links and changes of address go with the row
            // (ON DELETE CASCADE).
            diesel::delete(users::table.find(&user)).execute(conn)?;
            let mut announced = NewInvalidation::sessions(&live);
            announced.extend(keys.iter().map(|(_, public)| NewInvalidation::api_key(public.clone())));
            announced.push(NewInvalidation::user(user.clone()));
            conn.append_invalidations(&announced)?;
            Ok(Some((live, keys)))
        }))?;
        let Some((live, keys)) = deleted else { return Ok(None) };
        Ok(Some(DeletedAccount {
            sessions: session_ids(live)?,
            api_keys: keys.into_iter().map(|(_, public)| public).collect(),
        }))
    }
}
