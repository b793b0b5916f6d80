#![doc = include_str!("../README.md")]

mod account;
mod api_keys;
mod connection;
mod error;
mod events;
mod invalidations;
mod mfa;
mod migrations;
mod models;
mod oauth;
mod passkeys;
mod schema;
mod sessions;
mod tokens;
mod usage;
mod users;

use chrono::{DateTime, Utc};
use connection::{with_conn, Dialect, Pools, Target};
use diesel::{BoolExpressionMethods, ExpressionMethods, QueryDsl, RunQueryDsl};
use std::fmt;
use std::sync::Arc;

pub use error::StoreError;
pub use invalidations::INVALIDATIONS_PER_READ;

/// The PostgreSQL advisory lock (`pg_advisory_xact_lock`) that every
/// transaction appending to `invalidations` takes just before its insert,
/// so that the feed's ids become visible in increasing order (see the crate
/// docs). Whoever appends by hand must take it too:
/// `BEGIN; SELECT pg_advisory_xact_lock(<this>); INSERT INTO invalidations …; COMMIT;`
pub const INVALIDATION_LOCK_KEY: i64 = 0x636f_6e76_696e_7661; // "convinva"

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file (`sqlite://PATH`).
    Sqlite,
    /// A PostgreSQL server (`postgres://…`).
    Postgres,
}

impl Backend {
    /// `sqlite` or `postgres`, for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The storage adapter: users, sessions with their refresh tokens, one-time
/// tokens, API keys and the invalidation feed, in SQLite or PostgreSQL.
///
/// It implements the domain's [`UserRepository`], [`SessionRepository`],
/// [`OneTimeTokenRepository`] (hence its `Store` port), [`ApiKeyRepository`],
/// [`OAuthRepository`] and [`InvalidationFeed`]. Cloning is cheap: the clones share one
/// connection pool.
///
/// [`UserRepository`]: convosphere_domain::ports::UserRepository
/// [`SessionRepository`]: convosphere_domain::ports::SessionRepository
/// [`OneTimeTokenRepository`]: convosphere_domain::ports::OneTimeTokenRepository
/// [`ApiKeyRepository`]: convosphere_domain::ports::ApiKeyRepository
/// [`OAuthRepository`]: convosphere_domain::ports::OAuthRepository
/// [`InvalidationFeed`]: convosphere_domain::ports::InvalidationFeed
#[derive(Clone)]
pub struct Store {
    pools: Arc<Pools>,
}

impl Store {
    /// Connects to `sqlite://PATH` (the file and its directory are created
    /// if missing) or `postgres://…` / `postgresql://…`, and checks that the
    /// database answers. It does not migrate: call [`migrate`](Self::migrate).
    ///
    /// A database that cannot be reached gives an error whose
    /// [`is_unavailable`](StoreError::is_unavailable) is true.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let target = Target::parse(url)?;
        let pools = tokio::task::spawn_blocking(move || Pools::open(target))
            .await
            .map_err(|e| StoreError::Unavailable(format!("the connection task did not finish: {e}")))??;
        let store = Self { pools: Arc::new(pools) };
        tracing::debug!(backend = %store.backend(), "database connected");
        Ok(store)
    }

    /// Applies the pending migrations (embedded in the binary) and returns
    /// how many ran. Running it again, or from several instances at once,
    /// is safe.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        let applied = with_conn!(self, |conn| conn.migrate())?;
        if applied > 0 {
            tracing::info!(backend = %self.backend(), applied, "database migrated");
        }
        Ok(applied)
    }

    /// Checks that the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_conn!(self, |conn| {
            diesel::sql_query("SELECT 1").execute(conn)?;
            Ok(())
        })
    }

    /// Deletes what no rule reads any more: sessions that ended or expired
    /// before `before` (with their refresh tokens), one-time tokens and
    /// change-of-address links, OAuth
    /// states, OAuth login codes and passkey challenges that expired before it, and
    /// invalidations written before it. Meant for a
    /// periodic job, with `before` well in the past (a day or more): a
    /// session's row is what makes a still-unexpired access token of it
    /// answer `session_expired` rather than `invalid_token`, and a feed reader
    /// whose cursor is older than `before` misses what was purged (readers
    /// poll every second or so; one that could not read empties its caches).
    pub async fn purge_expired(&self, before: DateTime<Utc>) -> Result<Purged, StoreError> {
        let before = models::db_time(before);
        with_conn!(self, |conn| {
            conn.write_transaction(|conn| {
                let sessions = diesel::delete(
                    schema::sessions::table.filter(
                        schema::sessions::expires_at
                            .lt(before)
                            .or(schema::sessions::ended_at.lt(before)),
                    ),
                )
                .execute(conn)?;
                let one_time_tokens = diesel::delete(
                    schema::one_time_tokens::table.filter(schema::one_time_tokens::expires_at.lt(before)),
                )
                .execute(conn)?
                    + diesel::delete(schema::email_changes::table.filter(schema::email_changes::expires_at.lt(before)))
                        .execute(conn)?;
                let oauth = diesel::delete(
                    schema::oauth_pending_logins::table.filter(schema::oauth_pending_logins::expires_at.lt(before)),
                )
                .execute(conn)?
                    + diesel::delete(
                        schema::oauth_login_codes::table.filter(schema::oauth_login_codes::expires_at.lt(before)),
                    )
                    .execute(conn)?;
                let passkey_challenges = diesel::delete(
                    schema::passkey_challenges::table.filter(schema::passkey_challenges::expires_at.lt(before)),
                )
                .execute(conn)?;
                // Deleting takes no turn with the appenders: it only removes
                // rows far behind every reader's cursor.
                let invalidations =
                    diesel::delete(schema::invalidations::table.filter(schema::invalidations::created_at.lt(before)))
                        .execute(conn)?;
                Ok(Purged {
                    sessions,
                    one_time_tokens,
                    oauth,
                    passkey_challenges,
                    invalidations,
                })
            })
        })
    }

    /// The backend behind this store.
    pub fn backend(&self) -> Backend {
        match *self.pools {
            Pools::Sqlite(..) => Backend::Sqlite,
            Pools::Postgres(_) => Backend::Postgres,
        }
    }

    fn pools(&self) -> &Pools {
        &self.pools
    }
}

/// What [`Store::purge_expired`] deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Purged {
    /// Sessions, each with its refresh tokens.
    pub sessions: usize,
    /// One-time e-mail tokens and changes of address.
    pub one_time_tokens: usize,
    /// OAuth logins left unfinished and their unused one-time codes.
    pub oauth: usize,
    /// Passkey ceremonies left unfinished.
    pub passkey_challenges: usize,
    /// Rows of the invalidation feed.
    pub invalidations: usize,
}

impl fmt::Debug for Store {
    // Never the URL: it may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("backend", &self.backend()).finish()
    }
}
