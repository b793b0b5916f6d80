//! [`UserRepository`] for [`Store`].

use crate::connection::{with_conn, Dialect};
use crate::error::StoreError;
use crate::events::NewEventRow;
use crate::models::{db_time, NewInvalidation, NewOneTimeToken, ProfileChanges, UserRow};
use crate::schema::{email_changes, one_time_tokens, security_events, unknown_login_attempts, users};
use crate::Store;
use chrono::{DateTime, Utc};
use convosphere_domain::ports::{CreateUserError, FailedLogin, RefusedLogin, UserRepository};
use convosphere_domain::profile::ProfileUpdate;
use convosphere_domain::{
    Email, InfraError, NewUser, PasswordHash, Plan, SecurityEvent, TokenHash, TokenKind, User, UserId,
};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorInformation, DatabaseErrorKind, Error as DieselError};

/// Whether a unique violation is the one on `users.email` (PostgreSQL names
/// the constraint; SQLite only names the column).
fn is_email_conflict(info: &dyn DatabaseErrorInformation) -> bool {
    info.constraint_name() == Some("users_email_key") || info.message().contains("users.email")
}

fn to_user(row: Option<UserRow>) -> Result<Option<User>, InfraError> {
    Ok(row.map(User::try_from).transpose()?)
}

/// `updated_at` of a change: the ports pass no time for these writes, and the
/// column is bookkeeping that no rule reads.
fn updated_now() -> chrono::NaiveDateTime {
    db_time(Utc::now())
}

/// Inserts a `UserRow` inside a transaction: the stored row, or `None` when
/// the address is taken. ON CONFLICT DO NOTHING rather than catching the
/// unique violation: on PostgreSQL a failed statement would abort the
/// transaction. A macro, as the connection type differs per backend.
macro_rules! insert_user_unless_taken {
    ($conn:expr, $row:expr) => {
        diesel::insert_into($crate::schema::users::table)
            .values($row)
            .on_conflict_do_nothing()
            .returning($crate::models::UserRow::as_returning())
            .get_result($conn)
            .optional()?
    };
}
pub(crate) use insert_user_unless_taken;

/// Counts one failed login of the user `$id` inside a transaction, `true`
/// when it locks the account. Read-modify-write under the user's lock:
/// parallel failures are counted one after the other, so exactly one
/// reaches the threshold and the rest find the account locked. A macro, as
/// the connection type differs per backend.
macro_rules! count_failed_login {
    ($conn:expr, $id:expr, $now:expr, $threshold:expr, $locked_until:expr) => {
        match $conn.lock_user($id)? {
            None => false,
            Some(user) if user.locked_until.is_some_and(|until| until > $now) => false,
            Some(user) => {
                let count = user.failed_logins.saturating_add(1);
                let target = users::table.find($id);
                if count >= $threshold {
                    diesel::update(target)
                        .set((
                            users::failed_logins.eq(0),
                            users::locked_until.eq(Some($locked_until)),
                            users::updated_at.eq($now),
                        ))
                        .execute($conn)?;
                    // Every instance sees the lockout at once, not after its cache's 5 s.
                    $conn.append_invalidations(&[NewInvalidation::user($id.to_owned())])?;
                    true
                } else {
                    diesel::update(target)
                        .set((users::failed_logins.eq(count), users::updated_at.eq($now)))
                        .execute($conn)?;
                    false
                }
            }
        }
    };
}

/// The account an insert made, or `EmailTaken` when it made none.
pub(crate) fn created_user(row: Option<UserRow>) -> Result<User, CreateUserError> {
    match row {
        Some(row) => Ok(User::try_from(row).map_err(InfraError::from)?),
        None => Err(CreateUserError::EmailTaken),
    }
}

impl UserRepository for Store {
    async fn create_user(&self, user: &NewUser) -> Result<User, CreateUserError> {
        let row = UserRow::new(user);
        let created = with_conn!(self, |conn| conn.write(|conn| {
            match diesel::insert_into(users::table)
                .values(&row)
                .returning(UserRow::as_returning())
                .get_result(conn)
            {
                Ok(row) => Ok(Some(row)),
                Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info))
                    if is_email_conflict(info.as_ref()) =>
                {
                    Ok(None)
                }
                Err(e) => Err(StoreError::from(e)),
            }
        }))
        .map_err(InfraError::from)?;
        created_user(created)
    }

    async fn create_user_with_link(
        &self,
        user: &NewUser,
        token: &TokenHash,
        token_expires_at: DateTime<Utc>,
        event: &SecurityEvent,
    ) -> Result<User, CreateUserError> {
        let user_row = UserRow::new(user);
        let token_row = NewOneTimeToken {
            hash: token.to_hex(),
            user_id: user.id.to_string(),
            kind: TokenKind::EmailVerification.as_str().to_owned(),
            created_at: db_time(user.created_at),
            expires_at: db_time(token_expires_at),
        };
        let event_row = NewEventRow::new(event);
        let created = with_conn!(self, |conn| {
            conn.write_transaction(|conn| {
                let Some(created) = insert_user_unless_taken!(conn, &user_row) else {
                    return Ok(None);
                };
                diesel::insert_into(one_time_tokens::table)
                    .values(&token_row)
                    .execute(conn)?;
                diesel::insert_into(security_events::table)
                    .values(&event_row)
                    .execute(conn)?;
                Ok(Some(created))
            })
        })
        .map_err(InfraError::from)?;
        created_user(created)
    }

    async fn user_by_id(&self, id: UserId) -> Result<Option<User>, InfraError> {
        let id = id.to_string();
        let row = with_conn!(self, |conn| {
            Ok(users::table
                .find(id)
                .select(UserRow::as_select())
                .first(conn)
                .optional()?)
        })?;
        to_user(row)
    }

    async fn user_by_email(&self, email: &Email) -> Result<Option<User>, InfraError> {
        // Stored lower-cased by `Email::parse`, so equality is case-insensitive.
        let email = email.as_str().to_owned();
        let row = with_conn!(self, |conn| {
            Ok(users::table
                .filter(users::email.eq(email))
                .select(UserRow::as_select())
                .first(conn)
                .optional()?)
        })?;
        to_user(row)
    }

    async fn update_profile(&self, id: UserId, update: &ProfileUpdate) -> Result<Option<User>, InfraError> {
        let id = id.to_string();
        let changes = ProfileChanges::new(update, Utc::now());
        let row = with_conn!(self, |conn| conn.write(|conn| {
            Ok(diesel::update(users::table.find(id))
                .set(&changes)
                .returning(UserRow::as_returning())
                .get_result(conn)
                .optional()?)
        }))?;
        to_user(row)
    }

    async fn set_email_verified(&self, id: UserId) -> Result<Option<User>, InfraError> {
        let id = id.to_string();
        let now = updated_now();
        let row = with_conn!(self, |conn| conn.write(|conn| {
            Ok(diesel::update(users::table.find(id))
                .set((users::email_verified.eq(true), users::updated_at.eq(now)))
                .returning(UserRow::as_returning())
                .get_result(conn)
                .optional()?)
        }))?;
        to_user(row)
    }

    async fn set_password_hash(&self, id: UserId, hash: &PasswordHash) -> Result<(), InfraError> {
        let id = id.to_string();
        let hash = hash.as_str().to_owned();
        let now = updated_now();
        with_conn!(self, |conn| conn.write_transaction(|conn| {
            // In one transaction: no reset link outlives the password it was
            // sent for, nor a change of address asked for before it.
            diesel::delete(
                one_time_tokens::table
                    .filter(one_time_tokens::user_id.eq(&id))
                    .filter(one_time_tokens::kind.eq(TokenKind::PasswordReset.as_str())),
            )
            .execute(conn)?;
            diesel::delete(email_changes::table.filter(email_changes::user_id.eq(&id))).execute(conn)?;
            diesel::update(users::table.find(&id))
                .set((users::password_hash.eq(hash), users::updated_at.eq(now)))
                .execute(conn)?;
            // Every instance forgets the user it remembered with the old hash.
            conn.append_invalidations(&[NewInvalidation::user(id)])?;
            Ok(())
        }))?;
        Ok(())
    }

    async fn record_failed_login(
        &self,
        id: UserId,
        now: DateTime<Utc>,
        threshold: u32,
        locked_until: DateTime<Utc>,
    ) -> Result<FailedLogin, InfraError> {
        let id = id.to_string();
        let now = db_time(now);
        let locked_until = db_time(locked_until);
        let threshold = i32::try_from(threshold).unwrap_or(i32::MAX);
        let locked = with_conn!(self, |conn| {
            conn.write_transaction(|conn| Ok(count_failed_login!(conn, &id, now, threshold, locked_until)))
        })?;
        Ok(FailedLogin { locked })
    }

    async fn record_refused_login(
        &self,
        refused: RefusedLogin<'_>,
        threshold: u32,
        locked_until: DateTime<Utc>,
    ) -> Result<FailedLogin, InfraError> {
        let threshold = i32::try_from(threshold).unwrap_or(i32::MAX);
        let locked_until = db_time(locked_until);
        let locked = match refused {
            RefusedLogin::Account { event, count } => {
                let (id, now, row) = (event.user_id.to_string(), db_time(event.at), NewEventRow::new(event));
                with_conn!(self, |conn| conn.write_transaction(|conn| {
                    let locked = if count {
                        count_failed_login!(conn, &id, now, threshold, locked_until)
                    } else {
                        conn.lock_user(&id)?;
                        false
                    };
                    diesel::insert_into(security_events::table).values(&row).execute(conn)?;
                    Ok(locked)
                }))?
            }
            RefusedLogin::UnknownAddress { at, client } => {
                let row = (
                    unknown_login_attempts::at.eq(db_time(at)),
                    unknown_login_attempts::ip.eq(client.ip.clone()),
                    unknown_login_attempts::user_agent.eq(client.user_agent.clone()),
                );
                let now = db_time(at);
                with_conn!(self, |conn| conn.write_transaction(|conn| {
                    // An account's statements, finding no account (no id is
                    // nil): the same round trips and locks as a wrong password.
                    let nobody = uuid::Uuid::nil().to_string();
                    count_failed_login!(conn, &nobody, now, threshold, locked_until);
                    diesel::update(users::table.find(&nobody))
                        .set(users::updated_at.eq(now))
                        .execute(conn)?;
                    diesel::insert_into(unknown_login_attempts::table)
                        .values(&row)
                        .execute(conn)?;
                    Ok(false)
                }))?
            }
        };
        Ok(FailedLogin { locked })
    }

    async fn clear_failed_logins(&self, id: UserId) -> Result<(), InfraError> {
        let id = id.to_string();
        let now = updated_now();
        with_conn!(self, |conn| conn.write_transaction(|conn| {
            diesel::update(users::table.find(&id))
                .set((
                    users::failed_logins.eq(0),
                    users::locked_until.eq(None::<chrono::NaiveDateTime>),
                    users::updated_at.eq(now),
                ))
                .execute(conn)?;
            conn.append_invalidations(&[NewInvalidation::user(id)])?;
            Ok(())
        }))?;
        Ok(())
    }

    async fn set_plan(&self, id: UserId, plan: Plan) -> Result<(), InfraError> {
        let id = id.to_string();
        let now = updated_now();
        with_conn!(self, |conn| {
            conn.write_transaction(|conn| {
                // Only a real change is written and announced to the caches.
                let changed = diesel::update(users::table.find(&id).filter(users::plan.ne(plan.as_str())))
                    .set((users::plan.eq(plan.as_str()), users::updated_at.eq(now)))
                    .execute(conn)?;
                if changed == 1 {
                    conn.append_invalidations(&[NewInvalidation::user(id)])?;
                }
                Ok(())
            })
        })?;
        Ok(())
    }

    async fn set_suspended(&self, id: UserId, suspended: bool) -> Result<(), InfraError> {
        let id = id.to_string();
        let now = updated_now();
        with_conn!(self, |conn| {
            conn.write_transaction(|conn| {
                // Only a real change is written and announced to the caches.
                let changed = diesel::update(users::table.find(&id).filter(users::suspended.ne(suspended)))
                    .set((users::suspended.eq(suspended), users::updated_at.eq(now)))
                    .execute(conn)?;
                if changed == 1 {
                    conn.append_invalidations(&[NewInvalidation::user(id)])?;
                }
                Ok(())
            })
        })?;
        Ok(())
    }
}
