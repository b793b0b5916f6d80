//! [`OAuthRepository`] for [`Store`].

use crate::connection::{with_conn, Dialect};
use crate::error::StoreError;
use crate::models::{
    db_time, provider, user_id, NewInvalidation, NewLoginCode, NewOAuthIdentity, PendingLoginRow, UserRow,
};
use crate::schema::{oauth_identities, oauth_login_codes, oauth_pending_logins, passkeys, users};
use crate::users::{created_user, insert_user_unless_taken};
use crate::Store;
use chrono::{DateTime, NaiveDateTime, Utc};
use convosphere_domain::oauth::{IdentityRecord, LinkOutcome, LinkedIdentity, PendingLogin, Provider, UnlinkOutcome};
use convosphere_domain::ports::{CreateUserError, OAuthRepository};
use convosphere_domain::{Email, InfraError, NewUser, TokenHash, User, UserId};
use diesel::prelude::*;

impl OAuthRepository for Store {
    async fn save_pending_login(&self, pending: &PendingLogin) -> Result<(), InfraError> {
        let row = PendingLoginRow::new(pending);
        with_conn!(self, |conn| conn.write(|conn| {
            diesel::insert_into(oauth_pending_logins::table)
                .values(&row)
                .execute(conn)?;
            Ok(())
        }))?;
        Ok(())
    }

    async fn take_pending_login(&self, state: &TokenHash) -> Result<Option<PendingLogin>, InfraError> {
        let hash = state.to_hex();
        let row = with_conn!(self, |conn| conn.write(|conn| {
            // One DELETE … RETURNING: of parallel takers exactly one deletes
            // the row, and only that one gets it back.
            Ok(diesel::delete(oauth_pending_logins::table.find(hash))
                .returning(PendingLoginRow::as_returning())
                .get_result(conn)
                .optional()?)
        }))?;
        Ok(row.map(PendingLogin::try_from).transpose()?)
    }

    async fn identity_owner(&self, provider: Provider, subject: &str) -> Result<Option<UserId>, InfraError> {
        let subject = subject.to_owned();
        let owner = with_conn!(self, |conn| {
            Ok(oauth_identities::table
                .find((provider.as_str(), subject))
                .select(oauth_identities::user_id)
                .first::<String>(conn)
                .optional()?)
        })?;
        Ok(owner.as_deref().map(user_id).transpose()?)
    }

    async fn identities(&self, user: UserId) -> Result<Vec<IdentityRecord>, InfraError> {
        let user = user.to_string();
        let rows: Vec<(String, String, NaiveDateTime, Option<NaiveDateTime>)> = with_conn!(self, |conn| {
            Ok(oauth_identities::table
                .filter(oauth_identities::user_id.eq(user))
                .order(oauth_identities::created_at)
                .select((
                    oauth_identities::provider,
                    oauth_identities::email,
                    oauth_identities::created_at,
                    oauth_identities::last_used_at,
                ))
                .load(conn)?)
        })?;
        rows.into_iter()
            .map(|(provider, email, linked_at, last_used_at)| {
                let corrupt = |what: &str| StoreError::Corrupt(format!("oauth_identities.{what} {provider:?}"));
                Ok(IdentityRecord {
                    provider: provider.parse().map_err(|_| corrupt("provider"))?,
                    email: Email::parse(&email).map_err(|_| corrupt("email"))?,
                    linked_at: linked_at.and_utc(),
                    last_used_at: last_used_at.map(|at| at.and_utc()),
                })
            })
            .collect::<Result<_, StoreError>>()
            .map_err(InfraError::from)
    }

    async fn note_identity_use(&self, provider: Provider, subject: &str, at: DateTime<Utc>) -> Result<(), InfraError> {
        let (subject, at) = (subject.to_owned(), db_time(at));
        with_conn!(self, |conn| conn.write(|conn| {
            diesel::update(oauth_identities::table.find((provider.as_str(), subject)))
                .set(oauth_identities::last_used_at.eq(Some(at)))
                .execute(conn)?;
            Ok(())
        }))?;
        Ok(())
    }

    async fn unlink_identity(&self, user: UserId, provider: Provider) -> Result<UnlinkOutcome, InfraError> {
        let user = user.to_string();
        let outcome = with_conn!(self, |conn| conn.write_transaction(|conn| {
            // Under the account's lock: two unlinks at once are counted one after the other.
            let Some(account) = conn.lock_user(&user)? else {
                return Ok(UnlinkOutcome::NotLinked);
            };
            let linked: Vec<String> = oauth_identities::table
                .filter(oauth_identities::user_id.eq(&user))
                .select(oauth_identities::provider)
                .load(conn)?;
            if !linked.iter().any(|p| p == provider.as_str()) {
                return Ok(UnlinkOutcome::NotLinked);
            }
            let passkeys: i64 = passkeys::table
                .filter(passkeys::user_id.eq(&user))
                .count()
                .get_result(conn)?;
            if account.password_hash.is_none() && passkeys == 0 && linked.len() <= 1 {
                return Ok(UnlinkOutcome::LastWayIn);
            }
            diesel::delete(
                oauth_identities::table
                    .filter(oauth_identities::user_id.eq(&user))
                    .filter(oauth_identities::provider.eq(provider.as_str())),
            )
            .execute(conn)?;
            Ok(UnlinkOutcome::Unlinked)
        }))?;
        Ok(outcome)
    }

    async fn link_identity(&self, identity: &LinkedIdentity) -> Result<LinkOutcome, InfraError> {
        let row = NewOAuthIdentity::new(identity);
        let now = db_time(identity.created_at);
        let owner = with_conn!(self, |conn| {
            conn.write_transaction(|conn| {
                // Under the user's lock, like every other change of the account.
                conn.lock_user(&row.user_id)?;
                let inserted = diesel::insert_into(oauth_identities::table)
                    .values(&row)
                    .on_conflict_do_nothing()
                    .execute(conn)?;
                if inserted == 0 {
                    let owner = oauth_identities::table
                        .find((row.provider, &row.subject))
                        .select(oauth_identities::user_id)
                        .first::<String>(conn)?;
                    return Ok(Some(owner));
                }
                // The provider verified the account's address: an unverified
                // account is claimed, and the password nobody proved is
                // dropped. (An identity linked from the settings may come
                // with another address, which proves nothing of this one.)
                let claimed = diesel::update(
                    users::table
                        .find(&row.user_id)
                        .filter(users::email_verified.eq(false))
                        .filter(users::email.eq(&row.email)),
                )
                .set((
                    users::email_verified.eq(true),
                    users::password_hash.eq(None::<String>),
                    users::updated_at.eq(now),
                ))
                .execute(conn)?;
                if claimed == 1 {
                    conn.append_invalidations(&[NewInvalidation::user(row.user_id.clone())])?;
                }
                Ok(None)
            })
        })?;
        match owner {
            None => Ok(LinkOutcome::Linked),
            Some(owner) => Ok(LinkOutcome::AlreadyLinked(user_id(&owner)?)),
        }
    }

    async fn create_user_with_identity(
        &self,
        user: &NewUser,
        identity: &LinkedIdentity,
    ) -> Result<User, CreateUserError> {
        let user_row = UserRow::new(user);
        let identity_row = NewOAuthIdentity::new(identity);
        let created = with_conn!(self, |conn| {
            conn.write_transaction(|conn| {
                let linked = oauth_identities::table
                    .find((identity_row.provider, &identity_row.subject))
                    .select(oauth_identities::user_id)
                    .first::<String>(conn)
                    .optional()?;
                if linked.is_some() {
                    return Ok(None);
                }
                let Some(created) = insert_user_unless_taken!(conn, &user_row) else {
                    return Ok(None);
                };
                diesel::insert_into(oauth_identities::table)
                    .values(&identity_row)
                    .execute(conn)?;
                Ok(Some(created))
            })
        })
        .map_err(InfraError::from)?;
        created_user(created)
    }

    async fn issue_login_code(
        &self,
        code: &TokenHash,
        user: UserId,
        provider: Provider,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), InfraError> {
        let row = NewLoginCode {
            hash: code.to_hex(),
            user_id: user.to_string(),
            provider: provider.as_str(),
            created_at: db_time(now),
            expires_at: db_time(expires_at),
        };
        with_conn!(self, |conn| conn.write(|conn| {
            diesel::insert_into(oauth_login_codes::table)
                .values(&row)
                .execute(conn)?;
            Ok(())
        }))?;
        Ok(())
    }

    async fn login_code_owner(
        &self,
        code: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Option<(UserId, Provider)>, InfraError> {
        let hash = code.to_hex();
        let now = db_time(now);
        let found = with_conn!(self, |conn| {
            Ok(oauth_login_codes::table
                .filter(oauth_login_codes::hash.eq(hash))
                .filter(oauth_login_codes::used_at.is_null())
                .filter(oauth_login_codes::expires_at.gt(now))
                .select((oauth_login_codes::user_id, oauth_login_codes::provider))
                .first::<(String, String)>(conn)
                .optional()?)
        })?;
        code_owner(found)
    }

    async fn consume_login_code(
        &self,
        code: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Option<(UserId, Provider)>, InfraError> {
        let hash = code.to_hex();
        let now = db_time(now);
        let used = with_conn!(self, |conn| conn.write(|conn| {
            // The same conditional UPDATE as one-time tokens: exactly one of
            // parallel uses changes the row and gets its owner.
            Ok(diesel::update(
                oauth_login_codes::table
                    .filter(oauth_login_codes::hash.eq(hash))
                    .filter(oauth_login_codes::used_at.is_null())
                    .filter(oauth_login_codes::expires_at.gt(now)),
            )
            .set(oauth_login_codes::used_at.eq(Some(now)))
            .returning((oauth_login_codes::user_id, oauth_login_codes::provider))
            .get_result::<(String, String)>(conn)
            .optional()?)
        }))?;
        code_owner(used)
    }
}

/// The account and provider of a login code's row.
fn code_owner(row: Option<(String, String)>) -> Result<Option<(UserId, Provider)>, InfraError> {
    match row {
        None => Ok(None),
        Some((user, name)) => Ok(Some((user_id(&user)?, provider(&name)?))),
    }
}
