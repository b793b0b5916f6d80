//! [`OneTimeTokenRepository`] for [`Store`].

use crate::connection::{with_conn, Dialect};
use crate::models::{db_time, user_id, NewOneTimeToken};
use crate::schema::one_time_tokens;
use crate::Store;
use chrono::{DateTime, Utc};
use convosphere_domain::ports::OneTimeTokenRepository;
use convosphere_domain::{InfraError, TokenHash, TokenKind, UserId};
use diesel::prelude::*;

impl OneTimeTokenRepository for Store {
    async fn issue_token(
        &self,
        user: UserId,
        kind: TokenKind,
        hash: &TokenHash,
        expires_at: DateTime<Utc>,
    ) -> Result<(), InfraError> {
        let token = NewOneTimeToken {
            hash: hash.to_hex(),
            user_id: user.to_string(),
            kind: kind.as_str().to_owned(),
            // The port passes no issue time; the column is informational.
            created_at: db_time(Utc::now()),
            expires_at: db_time(expires_at),
        };
        with_conn!(self, |conn| {
            conn.write_transaction(|conn| {
                // Under the user's lock, so that of two parallel issues the
                // later one still removes the earlier token.
                conn.lock_user(&token.user_id)?;
                diesel::delete(
                    one_time_tokens::table
                        .filter(one_time_tokens::user_id.eq(&token.user_id))
                        .filter(one_time_tokens::kind.eq(&token.kind)),
                )
                .execute(conn)?;
                diesel::insert_into(one_time_tokens::table)
                    .values(&token)
                    .execute(conn)?;
                Ok(())
            })
        })?;
        Ok(())
    }

    async fn peek_token(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Option<UserId>, InfraError> {
        let hash = hash.to_hex();
        let now = db_time(now);
        let owner = with_conn!(self, |conn| {
            Ok(one_time_tokens::table
                .filter(one_time_tokens::hash.eq(hash))
                .filter(one_time_tokens::kind.eq(kind.as_str()))
                .filter(one_time_tokens::used_at.is_null())
                .filter(one_time_tokens::expires_at.gt(now))
                .select(one_time_tokens::user_id)
                .first::<String>(conn)
                .optional()?)
        })?;
        Ok(owner.as_deref().map(user_id).transpose()?)
    }

    async fn consume_token(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Option<UserId>, InfraError> {
        let hash = hash.to_hex();
        let now = db_time(now);
        let owner = with_conn!(self, |conn| conn.write(|conn| {
            // One conditional UPDATE: the database lets exactly one of any
            // number of parallel calls change the row (PostgreSQL re-checks
            // the WHERE after waiting for the row lock; SQLite runs writes
            // one at a time), and only that one gets the owner back.
            Ok(diesel::update(
                one_time_tokens::table
                    .filter(one_time_tokens::hash.eq(hash))
                    .filter(one_time_tokens::kind.eq(kind.as_str()))
                    .filter(one_time_tokens::used_at.is_null())
                    .filter(one_time_tokens::expires_at.gt(now)),
            )
            .set(one_time_tokens::used_at.eq(Some(now)))
            .returning(one_time_tokens::user_id)
            .get_result::<String>(conn)
            .optional()?)
        }))?;
        Ok(owner.as_deref().map(user_id).transpose()?)
    }
}
