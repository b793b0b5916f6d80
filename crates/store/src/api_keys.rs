//! [`ApiKeyRepository`] for [`Store`].

use crate::connection::{with_conn, Dialect};
use crate::models::{api_keys_from_rows, db_time, ApiKeyRow, NewInvalidation};
use crate::schema::api_keys;
use crate::Store;
use chrono::{DateTime, NaiveDateTime, Utc};
use convosphere_domain::api_key::{ApiKey, ApiKeyId};
use convosphere_domain::ports::ApiKeyRepository;
use convosphere_domain::usage::KeyUse;
use convosphere_domain::{ClientContext, InfraError, UserId};
use diesel::prelude::*;
use std::collections::BTreeMap;

/// Revokes the user's live key `id` at `now` and gives its public id; `None`
/// when the key is another user's, already revoked, or gone. This one
/// conditional update decides between parallel revocations and rotations of
/// a key (a macro, as each backend's connection type needs its own copy).
macro_rules! end_live_key {
    ($conn:expr, $user:expr, $id:expr, $now:expr) => {
        diesel::update(
            api_keys::table
                .filter(api_keys::id.eq($id))
                .filter(api_keys::user_id.eq($user))
                .filter(api_keys::revoked_at.is_null()),
        )
        .set(api_keys::revoked_at.eq(Some($now)))
        .returning(api_keys::public_id)
        .get_result::<String>($conn)
        .optional()
    };
}

impl ApiKeyRepository for Store {
    async fn create_api_key(&self, key: &ApiKey) -> Result<(), InfraError> {
        let row = ApiKeyRow::new(key);
        with_conn!(self, |conn| conn.write(|conn| {
            diesel::insert_into(api_keys::table).values(&row).execute(conn)?;
            Ok(())
        }))?;
        Ok(())
    }

    async fn api_key_by_public_id(&self, public_id: &str) -> Result<Option<ApiKey>, InfraError> {
        let public_id = public_id.to_owned();
        let row = with_conn!(self, |conn| {
            Ok(api_keys::table
                .filter(api_keys::public_id.eq(public_id))
                .select(ApiKeyRow::as_select())
                .first(conn)
                .optional()?)
        })?;
        Ok(row.map(ApiKey::try_from).transpose()?)
    }

    async fn api_key(&self, user: UserId, id: ApiKeyId) -> Result<Option<ApiKey>, InfraError> {
        let user = user.to_string();
        let id = id.to_string();
        let row = with_conn!(self, |conn| {
            Ok(api_keys::table
                .filter(api_keys::id.eq(id))
                .filter(api_keys::user_id.eq(user))
                .select(ApiKeyRow::as_select())
                .first(conn)
                .optional()?)
        })?;
        Ok(row.map(ApiKey::try_from).transpose()?)
    }

    async fn api_keys(&self, user: UserId) -> Result<Vec<ApiKey>, InfraError> {
        let user = user.to_string();
        let rows = with_conn!(self, |conn| {
            Ok(api_keys::table
                .filter(api_keys::user_id.eq(user))
                .order((api_keys::created_at.desc(), api_keys::id.desc()))
                .select(ApiKeyRow::as_select())
                .load(conn)?)
        })?;
        Ok(api_keys_from_rows(rows)?)
    }

    async fn revoke_api_key(&self, user: UserId, id: ApiKeyId, now: DateTime<Utc>) -> Result<bool, InfraError> {
        let user = user.to_string();
        let id = id.to_string();
        let now = db_time(now);
        let revoked = with_conn!(self, |conn| {
            conn.write_transaction(|conn| {
                // Another user's key, or a revoked one, changes nothing and
                // announces nothing.
                let Some(public_id) = end_live_key!(conn, &user, &id, now)? else {
                    return Ok(false);
                };
                conn.append_invalidations(&[NewInvalidation::api_key(public_id)])?;
                Ok(true)
            })
        })?;
        Ok(revoked)
    }

    async fn rotate_api_key(
        &self,
        user: UserId,
        old: ApiKeyId,
        replacement: &ApiKey,
        now: DateTime<Utc>,
    ) -> Result<bool, InfraError> {
        let user = user.to_string();
        let old = old.to_string();
        let replacement = ApiKeyRow::new(replacement);
        let now = db_time(now);
        let rotated = with_conn!(self, |conn| {
            conn.write_transaction(|conn| {
                // The conditional update decides: of parallel rotations of
                // one key, PostgreSQL makes the later ones wait for the row
                // lock and then re-checks `revoked_at IS NULL` against the
                // committed row (no longer true); SQLite runs them one after
                // the other. Only the winner stores a replacement.
                let Some(public_id) = end_live_key!(conn, &user, &old, now)? else {
                    return Ok(false);
                };
                diesel::insert_into(api_keys::table)
                    .values(&replacement)
                    .execute(conn)?;
                conn.append_invalidations(&[NewInvalidation::api_key(public_id)])?;
                Ok(true)
            })
        })?;
        Ok(rotated)
    }

    async fn record_api_key_use(&self, uses: &[KeyUse]) -> Result<(), InfraError> {
        // One update per key with its latest use, in id order: two
        // instances flushing overlapping batches lock the rows in the same
        // order, so they cannot deadlock on PostgreSQL.
        let mut latest: BTreeMap<String, &KeyUse> = BTreeMap::new();
        for used in uses {
            latest
                .entry(used.key.to_string())
                .and_modify(|seen| {
                    if used.at > seen.at {
                        *seen = used;
                    }
                })
                .or_insert(used);
        }
        if latest.is_empty() {
            return Ok(());
        }
        let latest: Vec<(String, NaiveDateTime, Option<String>, Option<String>)> = latest
            .into_iter()
            .map(|(id, used)| (id, db_time(used.at), used.ip.clone(), used.user_agent.clone()))
            .collect();
        with_conn!(self, |conn| {
            conn.write_transaction(|conn| {
                for (id, at, ip, user_agent) in &latest {
                    // Only forward: a late batch never undoes a newer use.
                    diesel::update(
                        api_keys::table
                            .filter(api_keys::id.eq(id))
                            .filter(api_keys::last_used_at.is_null().or(api_keys::last_used_at.lt(at))),
                    )
                    .set((
                        api_keys::last_used_at.eq(Some(*at)),
                        api_keys::last_used_ip.eq(ip),
                        api_keys::last_used_user_agent.eq(user_agent),
                    ))
                    .execute(conn)?;
                }
                Ok(())
            })
        })?;
        Ok(())
    }

    async fn api_key_last_client(&self, key: ApiKeyId) -> Result<ClientContext, InfraError> {
        let id = key.to_string();
        let last: Option<(Option<String>, Option<String>)> = with_conn!(self, |conn| Ok(api_keys::table
            .find(id)
            .select((api_keys::last_used_ip, api_keys::last_used_user_agent))
            .first(conn)
            .optional()?))?;
        let (ip, user_agent) = last.unwrap_or_default();
        Ok(ClientContext { ip, user_agent })
    }
}
