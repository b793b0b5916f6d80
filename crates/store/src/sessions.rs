//! [`SessionRepository`] for [`Store`].

use crate::connection::{with_conn, Dialect};
use crate::events::NewEventRow;
use crate::models::{amr_text, db_time, session_ids, sessions_from_rows, NewInvalidation, NewRefreshToken, SessionRow};
use crate::schema::{refresh_tokens, sessions};
use crate::Store;
use chrono::{DateTime, NaiveDateTime, Utc};
use convosphere_domain::ports::{NewSession, RefreshOutcome, SessionRepository};
use convosphere_domain::{AuthMethod, EndReason, InfraError, Session, SessionId, TokenHash, UserId};
use diesel::prelude::*;

/// What `rotate_refresh_token` decided, before conversion.
enum Rotation {
    Rotated(SessionRow),
    Reused(SessionRow),
    Expired,
    Unknown,
}

/// Ends, inside a transaction, the live sessions of the user `$user` but
/// the one with the id `$keep`; the ids of those it ended. A macro, as the
/// connection type differs per backend.
macro_rules! end_sessions_but {
    ($conn:expr, $user:expr, $keep:expr, $now:expr, $reason:expr) => {
        diesel::update(
            $crate::schema::sessions::table
                .filter($crate::schema::sessions::user_id.eq($user))
                .filter($crate::schema::sessions::ended_at.is_null())
                .filter($crate::schema::sessions::id.ne($keep)),
        )
        .set((
            $crate::schema::sessions::ended_at.eq(Some($now)),
            $crate::schema::sessions::end_reason.eq(Some($reason.as_str())),
        ))
        .returning($crate::schema::sessions::id)
        .get_results::<String>($conn)?
    };
}
pub(crate) use end_sessions_but;

/// The rows of a session to open, made from a [`NewSession`].
pub(crate) struct OpenedSession {
    pub(crate) row: SessionRow,
    pub(crate) event: NewEventRow,
    pub(crate) token: NewRefreshToken,
    pub(crate) cutoff: NaiveDateTime,
    pub(crate) keep: i64,
}

impl OpenedSession {
    pub(crate) fn new(new: &NewSession<'_>) -> Self {
        let row = SessionRow::new(new.session);
        let token = NewRefreshToken {
            hash: new.refresh.to_hex(),
            session_id: row.id.clone(),
            created_at: row.created_at,
        };
        Self {
            row,
            event: NewEventRow::new(new.signed_in),
            token,
            cutoff: db_time(new.idle_cutoff),
            keep: i64::from(new.max_active),
        }
    }
}

/// Stores, inside a transaction, an [`OpenedSession`], then ends the
/// user's oldest active sessions beyond the cap; the ids of those it ended.
/// The caller holds the user's lock (`lock_user`): logins of one user take
/// turns, so each one counts the sessions the previous ones left. A macro,
/// as the connection type differs per backend.
macro_rules! store_session {
    ($conn:expr, $opened:expr) => {{
        let opened = &$opened;
        let (row, now) = (&opened.row, opened.row.created_at);
        diesel::insert_into($crate::schema::sessions::table)
            .values(row)
            .execute($conn)?;
        diesel::insert_into($crate::schema::refresh_tokens::table)
            .values(&opened.token)
            .execute($conn)?;
        diesel::insert_into($crate::schema::security_events::table)
            .values(&opened.event)
            .execute($conn)?;
        let beyond_cap: Vec<String> = $crate::sessions::live_sessions(&row.user_id, now, opened.cutoff)
            .select($crate::schema::sessions::id)
            .offset(opened.keep)
            .load($conn)?;
        if !beyond_cap.is_empty() {
            diesel::update($crate::schema::sessions::table.filter($crate::schema::sessions::id.eq_any(&beyond_cap)))
                .set((
                    $crate::schema::sessions::ended_at.eq(Some(now)),
                    $crate::schema::sessions::end_reason.eq(Some(::convosphere_domain::EndReason::Evicted.as_str())),
                ))
                .execute($conn)?;
        }
        $conn.append_invalidations(&$crate::models::NewInvalidation::sessions(&beyond_cap))?;
        beyond_cap
    }};
}
pub(crate) use store_session;

impl SessionRepository for Store {
    async fn create_session(&self, new: &NewSession<'_>) -> Result<Vec<SessionId>, InfraError> {
        let opened = OpenedSession::new(new);
        let ended = with_conn!(self, |conn| conn.write_transaction(|conn| {
            conn.lock_user(&opened.row.user_id)?;
            Ok(store_session!(conn, opened))
        }))?;
        Ok(session_ids(ended)?)
    }

    async fn rotate_refresh_token(
        &self,
        presented: &TokenHash,
        replacement: &TokenHash,
        now: DateTime<Utc>,
        idle_cutoff: DateTime<Utc>,
    ) -> Result<RefreshOutcome, InfraError> {
        let presented = presented.to_hex();
        let replacement = replacement.to_hex();
        let now = db_time(now);
        let cutoff = db_time(idle_cutoff);
        let rotation = with_conn!(self, |conn| {
            conn.write_transaction(|conn| {
                let Some((session_id, user_id)) = refresh_tokens::table
                    .inner_join(sessions::table)
                    .filter(refresh_tokens::hash.eq(&presented))
                    .select((sessions::id, sessions::user_id))
                    .first::<(String, String)>(conn)
                    .optional()?
                else {
                    return Ok(Rotation::Unknown);
                };
                // Take turns with the user's other session changes, then
                // read the session as the previous turn left it.
                conn.lock_user(&user_id)?;
                let session: SessionRow = sessions::table
                    .find(&session_id)
                    .select(SessionRow::as_select())
                    .first(conn)?;
                if !session.is_active(now, cutoff) {
                    return Ok(Rotation::Expired);
                }
                // The conditional update is what makes the token single-use:
                // of two parallel rotations only one changes the row.
                let won = diesel::update(
                    refresh_tokens::table
                        .filter(refresh_tokens::hash.eq(&presented))
                        .filter(refresh_tokens::used_at.is_null()),
                )
                .set(refresh_tokens::used_at.eq(Some(now)))
                .execute(conn)?
                    == 1;
                if !won {
                    // Used before, or by a parallel call that just won: a
                    // theft signal. The whole session ends.
                    let ended = diesel::update(sessions::table.find(&session_id))
                        .set((
                            sessions::ended_at.eq(Some(now)),
                            sessions::end_reason.eq(Some(EndReason::RefreshReuse.as_str())),
                        ))
                        .returning(SessionRow::as_returning())
                        .get_result(conn)?;
                    conn.append_invalidations(&[NewInvalidation::session(session_id)])?;
                    return Ok(Rotation::Reused(ended));
                }
                diesel::insert_into(refresh_tokens::table)
                    .values(NewRefreshToken {
                        hash: replacement,
                        session_id: session_id.clone(),
                        created_at: now,
                    })
                    .execute(conn)?;
                let session = diesel::update(sessions::table.find(&session_id))
                    .set(sessions::last_active_at.eq(now))
                    .returning(SessionRow::as_returning())
                    .get_result(conn)?;
                Ok(Rotation::Rotated(session))
            })
        })?;
        Ok(match rotation {
            Rotation::Rotated(row) => RefreshOutcome::Rotated(Session::try_from(row)?),
            Rotation::Reused(row) => RefreshOutcome::Reused(Session::try_from(row)?),
            Rotation::Expired => RefreshOutcome::Expired,
            Rotation::Unknown => RefreshOutcome::Unknown,
        })
    }

    async fn session(&self, id: SessionId) -> Result<Option<Session>, InfraError> {
        let id = id.to_string();
        let row = with_conn!(self, |conn| {
            Ok(sessions::table
                .find(id)
                .select(SessionRow::as_select())
                .first(conn)
                .optional()?)
        })?;
        Ok(row.map(Session::try_from).transpose()?)
    }

    async fn touch_session(&self, id: SessionId, now: DateTime<Utc>) -> Result<(), InfraError> {
        let id = id.to_string();
        let now = db_time(now);
        with_conn!(self, |conn| conn.write(|conn| {
            // Never backwards: a slower request must not undo a newer touch.
            diesel::update(
                sessions::table
                    .filter(sessions::id.eq(id))
                    .filter(sessions::last_active_at.lt(now)),
            )
            .set(sessions::last_active_at.eq(now))
            .execute(conn)?;
            Ok(())
        }))?;
        Ok(())
    }

    async fn reauthenticate_session(
        &self,
        user: UserId,
        id: SessionId,
        auth_time: DateTime<Utc>,
        amr: &[AuthMethod],
        replacement: Option<&TokenHash>,
    ) -> Result<bool, InfraError> {
        let (user, id) = (user.to_string(), id.to_string());
        let (now, amr) = (db_time(auth_time), amr_text(amr));
        let replacement = replacement.map(TokenHash::to_hex);
        let marked = with_conn!(self, |conn| {
            conn.write_transaction(|conn| {
                let marked = diesel::update(
                    sessions::table
                        .filter(sessions::id.eq(&id))
                        .filter(sessions::user_id.eq(&user))
                        .filter(sessions::ended_at.is_null()),
                )
                .set((sessions::auth_time.eq(now), sessions::amr.eq(&amr)))
                .execute(conn)?
                    == 1;
                if !marked {
                    return Ok(false);
                }
                if let Some(hash) = &replacement {
                    // As a rotation leaves them: every earlier token used, one new.
                    diesel::update(
                        refresh_tokens::table
                            .filter(refresh_tokens::session_id.eq(&id))
                            .filter(refresh_tokens::used_at.is_null()),
                    )
                    .set(refresh_tokens::used_at.eq(Some(now)))
                    .execute(conn)?;
                    diesel::insert_into(refresh_tokens::table)
                        .values(NewRefreshToken {
                            hash: hash.clone(),
                            session_id: id.clone(),
                            created_at: now,
                        })
                        .execute(conn)?;
                }
                conn.append_invalidations(&[NewInvalidation::session(id.clone())])?;
                Ok(true)
            })
        })?;
        Ok(marked)
    }

    async fn end_session(
        &self,
        user: UserId,
        id: SessionId,
        now: DateTime<Utc>,
        reason: EndReason,
    ) -> Result<bool, InfraError> {
        let user = user.to_string();
        let id = id.to_string();
        let now = db_time(now);
        let ended = with_conn!(self, |conn| {
            conn.write_transaction(|conn| {
                let ended = diesel::update(
                    sessions::table
                        .filter(sessions::id.eq(&id))
                        .filter(sessions::user_id.eq(user))
                        .filter(sessions::ended_at.is_null()),
                )
                .set((
                    sessions::ended_at.eq(Some(now)),
                    sessions::end_reason.eq(Some(reason.as_str())),
                ))
                .execute(conn)?
                    == 1;
                if ended {
                    conn.append_invalidations(&[NewInvalidation::session(id)])?;
                }
                Ok(ended)
            })
        })?;
        Ok(ended)
    }

    async fn end_user_sessions(
        &self,
        user: UserId,
        except: Option<SessionId>,
        now: DateTime<Utc>,
        reason: EndReason,
    ) -> Result<Vec<SessionId>, InfraError> {
        let user = user.to_string();
        // No session has the nil id: "all but none" needs no second query.
        let except = except.map_or_else(|| uuid::Uuid::nil().to_string(), |id| id.to_string());
        let now = db_time(now);
        let ended = with_conn!(self, |conn| {
            conn.write_transaction(|conn| {
                let ended = end_sessions_but!(conn, &user, &except, now, reason);
                conn.append_invalidations(&NewInvalidation::sessions(&ended))?;
                Ok(ended)
            })
        })?;
        Ok(session_ids(ended)?)
    }

    async fn active_sessions(
        &self,
        user: UserId,
        now: DateTime<Utc>,
        idle_cutoff: DateTime<Utc>,
    ) -> Result<Vec<Session>, InfraError> {
        let user = user.to_string();
        let now = db_time(now);
        let cutoff = db_time(idle_cutoff);
        let rows = with_conn!(self, |conn| {
            Ok(live_sessions(&user, now, cutoff)
                .select(SessionRow::as_select())
                .load(conn)?)
        })?;
        Ok(sessions_from_rows(rows)?)
    }
}

/// The user's live sessions, newest first: not ended, not expired, and used
/// since `idle_cutoff`. The index `sessions_user_id_ended_at_created_at_idx`
/// finds them without walking the ended ones, which are kept a day.
#[diesel::dsl::auto_type(no_type_alias)]
pub(crate) fn live_sessions<'a>(user: &'a str, now: NaiveDateTime, idle_cutoff: NaiveDateTime) -> _ {
    sessions::table
        .filter(sessions::user_id.eq(user))
        .filter(sessions::ended_at.is_null())
        .filter(sessions::expires_at.gt(now))
        .filter(sessions::last_active_at.gt(idle_cutoff))
        .order((sessions::created_at.desc(), sessions::id.desc()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::sql_types::Text;
    use diesel::sqlite::{Sqlite, SqliteConnection};

    #[derive(QueryableByName)]
    struct PlanStep {
        #[diesel(sql_type = Text)]
        detail: String,
    }

    #[test]
    fn live_sessions_are_searched_by_user_and_end_not_walked() {
        let mut conn = SqliteConnection::establish(":memory:").unwrap();
        conn.migrate().unwrap();
        let now = db_time(Utc::now());
        let query = live_sessions("a-user", now, now).select(sessions::id).offset(5);
        let sql = diesel::debug_query::<Sqlite, _>(&query).to_string();
        let sql = sql.split(" -- binds:").next().unwrap();
        let plan: Vec<PlanStep> = diesel::sql_query(format!("EXPLAIN QUERY PLAN {sql}"))
            .load(&mut conn)
            .unwrap();
        let plan: Vec<&str> = plan.iter().map(|step| step.detail.as_str()).collect();
        assert!(
            plan.iter().any(|step| step.contains(
                "SEARCH sessions USING INDEX sessions_user_id_ended_at_created_at_idx (user_id=? AND ended_at=?)"
            )),
            "{plan:#?}"
        );
    }
}
