//! [`MfaRepository`] for [`Store`].

use crate::connection::{with_conn, Dialect};
use crate::models::{db_time, NewInvalidation};
use crate::schema::{recovery_codes, totp_secrets, users};
use crate::Store;
use chrono::{DateTime, NaiveDateTime, Utc};
use convosphere_domain::ports::{MfaRepository, TotpEnrolment};
use convosphere_domain::{InfraError, TokenHash, UserId};
use diesel::prelude::*;

impl MfaRepository for Store {
    async fn begin_totp(&self, user: UserId, sealed_secret: &str, now: DateTime<Utc>) -> Result<bool, InfraError> {
        let user = user.to_string();
        let sealed = sealed_secret.to_owned();
        let now = db_time(now);
        Ok(with_conn!(self, |conn| {
            conn.write_transaction(|conn| {
                // Under the user's lock, so a parallel confirmation cannot
                // be overwritten by a new, unconfirmed secret.
                if conn.lock_user(&user)?.is_none() {
                    return Ok(false);
                }
                let confirmed = totp_secrets::table
                    .find(&user)
                    .select(totp_secrets::confirmed)
                    .first::<bool>(conn)
                    .optional()?;
                if confirmed == Some(true) {
                    return Ok(false);
                }
                diesel::delete(totp_secrets::table.find(&user)).execute(conn)?;
                diesel::insert_into(totp_secrets::table)
                    .values((
                        totp_secrets::user_id.eq(&user),
                        totp_secrets::sealed_secret.eq(&sealed),
                        totp_secrets::confirmed.eq(false),
                        totp_secrets::created_at.eq(now),
                    ))
                    .execute(conn)?;
                Ok(true)
            })
        })?)
    }

    async fn totp(&self, user: UserId) -> Result<Option<TotpEnrolment>, InfraError> {
        let user = user.to_string();
        let row = with_conn!(self, |conn| {
            Ok(totp_secrets::table
                .find(user)
                .select((
                    totp_secrets::sealed_secret,
                    totp_secrets::confirmed,
                    totp_secrets::last_step,
                ))
                .first::<(String, bool, Option<i64>)>(conn)
                .optional()?)
        })?;
        Ok(row.map(|(sealed_secret, confirmed, last_step)| TotpEnrolment {
            sealed_secret,
            confirmed,
            last_step,
        }))
    }

    async fn confirm_totp(
        &self,
        user: UserId,
        step: i64,
        codes: &[TokenHash],
        now: DateTime<Utc>,
    ) -> Result<bool, InfraError> {
        let user = user.to_string();
        let now = db_time(now);
        let codes: Vec<String> = codes.iter().map(TokenHash::to_hex).collect();
        Ok(with_conn!(self, |conn| {
            conn.write_transaction(|conn| {
                let confirmed = diesel::update(
                    totp_secrets::table
                        .find(&user)
                        .filter(totp_secrets::confirmed.eq(false)),
                )
                .set((totp_secrets::confirmed.eq(true), totp_secrets::last_step.eq(Some(step))))
                .execute(conn)?;
                if confirmed != 1 {
                    return Ok(false);
                }
                diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(&user))).execute(conn)?;
                let rows: Vec<_> = codes
                    .iter()
                    .map(|hash| {
                        (
                            recovery_codes::hash.eq(hash),
                            recovery_codes::user_id.eq(&user),
                            recovery_codes::created_at.eq(now),
                        )
                    })
                    .collect();
                for row in rows {
                    diesel::insert_into(recovery_codes::table).values(row).execute(conn)?;
                }
                diesel::update(users::table.find(&user))
                    .set((users::mfa_enabled.eq(true), users::updated_at.eq(now)))
                    .execute(conn)?;
                conn.append_invalidations(&[NewInvalidation::user(user.clone())])?;
                Ok(true)
            })
        })?)
    }

    async fn use_totp_step(&self, user: UserId, step: i64) -> Result<bool, InfraError> {
        let user = user.to_string();
        let updated = with_conn!(self, |conn| conn.write(|conn| {
            // One conditional write: of parallel uses of one code, one wins.
            Ok(diesel::update(
                totp_secrets::table
                    .find(user)
                    .filter(totp_secrets::confirmed.eq(true))
                    .filter(totp_secrets::last_step.is_null().or(totp_secrets::last_step.lt(step))),
            )
            .set(totp_secrets::last_step.eq(Some(step)))
            .execute(conn)?)
        }))?;
        Ok(updated == 1)
    }

    async fn use_recovery_code(&self, user: UserId, code: &TokenHash, now: DateTime<Utc>) -> Result<bool, InfraError> {
        let user = user.to_string();
        let hash = code.to_hex();
        let now = db_time(now);
        let updated = with_conn!(self, |conn| conn.write(|conn| {
            Ok(diesel::update(
                recovery_codes::table
                    .find(hash)
                    .filter(recovery_codes::user_id.eq(user))
                    .filter(recovery_codes::used_at.is_null()),
            )
            .set(recovery_codes::used_at.eq(Some(now)))
            .execute(conn)?)
        }))?;
        Ok(updated == 1)
    }

    async fn recovery_codes_left(&self, user: UserId) -> Result<u32, InfraError> {
        let user = user.to_string();
        let left = with_conn!(self, |conn| {
            Ok(recovery_codes::table
                .filter(recovery_codes::user_id.eq(user))
                .filter(recovery_codes::used_at.is_null())
                .count()
                .get_result::<i64>(conn)?)
        })?;
        Ok(u32::try_from(left).unwrap_or(u32::MAX))
    }

    async fn disable_totp(&self, user: UserId) -> Result<(), InfraError> {
        let user = user.to_string();
        let now: NaiveDateTime = db_time(Utc::now());
        with_conn!(self, |conn| {
            conn.write_transaction(|conn| {
                diesel::delete(totp_secrets::table.find(&user)).execute(conn)?;
                diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(&user))).execute(conn)?;
                let changed = diesel::update(users::table.find(&user).filter(users::mfa_enabled.eq(true)))
                    .set((users::mfa_enabled.eq(false), users::updated_at.eq(now)))
                    .execute(conn)?;
                if changed == 1 {
                    conn.append_invalidations(&[NewInvalidation::user(user.clone())])?;
                }
                Ok(())
            })
        })?;
        Ok(())
    }
}
