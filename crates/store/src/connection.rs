//! Connecting: URL parsing, the two r2d2 pools, per-connection settings, and
//! the helper that runs one query body on either backend off the async runtime.

use crate::error::StoreError;
use crate::models::{NewInvalidation, UserRow};
use crate::schema::{api_keys, invalidations, users};
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, R2D2Connection};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::MigrationHarness;
use std::cell::{Cell, RefCell};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Connections per pool. Requests that find none free wait up to
/// [`CHECKOUT_TIMEOUT`]; the database is then reported unavailable.
const POOL_SIZE: u32 = 10;
/// How long a request waits for a pooled connection.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long SQLite waits for another connection's write lock before
/// failing with "database is locked".
const SQLITE_BUSY_TIMEOUT_MS: u32 = 5_000;

/// The pool of either backend.
pub(crate) enum Pools {
    /// `sqlite://PATH`, and the turns its writers take.
    Sqlite(Pool<ConnectionManager<SqliteConnection>>, Arc<WriterTurns>),
    /// `postgres://…`.
    Postgres(Pool<ConnectionManager<PgConnection>>),
}

/// Which database a URL names.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// A file path, or `:memory:`.
    Sqlite(String),
    /// The URL as given, for libpq.
    Postgres(String),
}

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Self, StoreError> {
        let url = url.trim();
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(StoreError::UnsupportedUrl);
            }
            return Ok(Self::Sqlite(path.to_owned()));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_owned()));
        }
        Err(StoreError::UnsupportedUrl)
    }
}

/// Settings every SQLite connection needs, applied when the pool opens it:
/// wait for the write lock instead of failing at once, WAL so that readers
/// never block the writer, and foreign keys enforced (off by default).
#[derive(Debug, Clone, Copy)]
struct SqliteSettings;

impl SqliteSettings {
    fn apply(conn: &mut SqliteConnection) -> QueryResult<()> {
        // busy_timeout first: switching to WAL needs the lock briefly.
        conn.batch_execute(&format!(
            "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}; PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;"
        ))
    }
}

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for SqliteSettings {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        Self::apply(conn).map_err(diesel::r2d2::Error::QueryError)
    }
}

impl Pools {
    /// Opens one connection to prove the database answers (a refused
    /// connection fails at once instead of after the pool's timeout), then
    /// builds the pool. Blocking.
    pub(crate) fn open(target: Target) -> Result<Self, StoreError> {
        match target {
            Target::Sqlite(path) => {
                let in_memory = path == ":memory:" || path.starts_with("file::memory:");
                if !in_memory {
                    create_private_file(&path)?;
                }
                let mut first = SqliteConnection::establish(&path)?;
                SqliteSettings::apply(&mut first)?;
                drop(first);
                let builder = Pool::builder()
                    .connection_timeout(CHECKOUT_TIMEOUT)
                    .connection_customizer(Box::new(SqliteSettings))
                    // A local file: no network to fail between checkouts.
                    .test_on_check_out(false);
                let builder = if in_memory {
                    // Every connection to :memory: is its own database: keep one, forever.
                    builder.max_size(1).idle_timeout(None).max_lifetime(None)
                } else {
                    builder.max_size(POOL_SIZE).min_idle(Some(1))
                };
                let pool = builder
                    .build(ConnectionManager::new(path))
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                Ok(Self::Sqlite(pool, Arc::default()))
            }
            Target::Postgres(url) => {
                drop(PgConnection::establish(&url)?);
                let pool = Pool::builder()
                    .max_size(POOL_SIZE)
                    .min_idle(Some(1))
                    .connection_timeout(CHECKOUT_TIMEOUT)
                    // A server restart breaks idle connections: check before use.
                    .test_on_check_out(true)
                    .build(ConnectionManager::new(url))
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                Ok(Self::Postgres(pool))
            }
        }
    }
}

/// Creates the database file's directory (0700) and the file itself (0600,
/// whatever the umask) before SQLite opens it: SQLite gives its journal and
/// WAL files the database file's permissions, so none of them is readable
/// by other users. An existing file or directory is left as it is.
fn create_private_file(path: &str) -> Result<(), StoreError> {
    let path = std::path::Path::new(path.strip_prefix("file:").unwrap_or(path));
    let path = path
        .to_str()
        .and_then(|p| p.split_once('?'))
        .map_or(path, |(p, _)| std::path::Path::new(p));
    let failed = |what: &std::path::Path, e: std::io::Error| {
        StoreError::Unavailable(format!("cannot create {}: {e}", what.display()))
    };
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(|e| failed(dir, e))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(failed(path, e)),
        _ => Ok(()),
    }
}

/// What differs between the backends, behind one interface so that each
/// query body is written once (see [`with_conn!`]).
pub(crate) trait Dialect: Connection + Sized {
    /// The SQL function of the greater of two values (`GREATEST`, `MAX`).
    const GREATEST: &'static str;

    /// Runs `f` in a transaction that will write. On SQLite it is
    /// `BEGIN IMMEDIATE`: it takes the database's write lock up front, so
    /// such transactions run one at a time and never fail half-way on a lock
    /// upgrade. On PostgreSQL it is an ordinary READ COMMITTED transaction;
    /// per-user serialization comes from [`lock_user`](Self::lock_user).
    fn write_transaction<T, F>(&mut self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut Self) -> Result<T, StoreError>;

    /// Runs `f`, writes outside a transaction (one statement, atomic on
    /// its own). On SQLite it runs in the store's writer turn, as
    /// [`write_transaction`](Self::write_transaction) does; on PostgreSQL
    /// it just runs.
    fn write<T, F>(&mut self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut Self) -> Result<T, StoreError>;

    /// Reads the user's row and, on PostgreSQL, locks it until the
    /// transaction ends (`SELECT … FOR NO KEY UPDATE`): transactions that lock
    /// the same user run one after the other, each seeing what the previous
    /// one committed. On SQLite the immediate transaction already excludes
    /// every other writer. `None` if there is no such user.
    fn lock_user(&mut self, id: &str) -> Result<Option<UserRow>, StoreError>;

    /// Of `ids`, the users that exist, held (PostgreSQL: `FOR KEY SHARE`)
    /// until the transaction ends, so that rows written for them in it
    /// cannot outlive a parallel deletion of the account. Call it inside a
    /// [`write_transaction`](Self::write_transaction).
    fn existing_users(&mut self, ids: &[String]) -> Result<Vec<String>, StoreError>;

    /// Whether the API key exists, held as [`existing_users`](Self::existing_users) holds users.
    fn api_key_exists(&mut self, id: &str) -> Result<bool, StoreError>;

    /// Appends rows to the invalidation feed. Call it inside a
    /// [`write_transaction`](Self::write_transaction), as its **last**
    /// statement, so that the rows commit with the change they announce.
    ///
    /// The feed is read by id (`id > cursor`), so ids must become visible
    /// in increasing order. SQLite runs writers one at a time, which gives
    /// that for free. On PostgreSQL a sequence value is taken at insert time
    /// but seen at commit, so two appenders could commit out of order and a
    /// reader could move its cursor past a row not yet committed, losing it.
    /// PostgreSQL appenders therefore first take the transaction-level
    /// advisory lock [`INVALIDATION_LOCK_KEY`](crate::INVALIDATION_LOCK_KEY):
    /// they take turns from taking their ids to their commit, and since
    /// PostgreSQL makes a commit visible before it releases the
    /// transaction's locks, a row is visible before the next id is handed
    /// out. Holding the lock only for the final insert and the commit keeps
    /// the turns short, and a holder waits for nothing else, so it cannot
    /// take part in a deadlock. Nothing is done for no rows.
    fn append_invalidations(&mut self, rows: &[NewInvalidation]) -> Result<(), StoreError>;

    /// Applies the pending migrations of this backend's history, one caller
    /// at a time; returns how many ran.
    fn migrate(&mut self) -> Result<usize, StoreError>;
}

fn migration_error(error: Box<dyn std::error::Error + Send + Sync>) -> StoreError {
    StoreError::Migration(error.to_string())
}

impl Dialect for SqliteConnection {
    const GREATEST: &'static str = "MAX";

    fn write_transaction<T, F>(&mut self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut Self) -> Result<T, StoreError>,
    {
        in_writer_turn(|| self.immediate_transaction(f))
    }

    fn write<T, F>(&mut self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut Self) -> Result<T, StoreError>,
    {
        in_writer_turn(|| f(self))
    }

    fn lock_user(&mut self, id: &str) -> Result<Option<UserRow>, StoreError> {
        Ok(users::table
            .find(id)
            .select(UserRow::as_select())
            .first(self)
            .optional()?)
    }

    fn existing_users(&mut self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        // One writer at a time: nothing can delete them before the commit.
        Ok(users::table
            .filter(users::id.eq_any(ids))
            .select(users::id)
            .load(self)?)
    }

    fn api_key_exists(&mut self, id: &str) -> Result<bool, StoreError> {
        Ok(diesel::select(diesel::dsl::exists(api_keys::table.find(id))).get_result(self)?)
    }

    fn append_invalidations(&mut self, rows: &[NewInvalidation]) -> Result<(), StoreError> {
        if !rows.is_empty() {
            diesel::insert_into(invalidations::table).values(rows).execute(self)?;
        }
        Ok(())
    }

    fn migrate(&mut self) -> Result<usize, StoreError> {
        // The immediate transaction keeps a second process from migrating at
        // the same time; diesel runs each migration in a savepoint inside it.
        self.write_transaction(|conn| {
            conn.run_pending_migrations(crate::migrations::SQLITE)
                .map(|applied| applied.len())
                .map_err(migration_error)
        })
    }
}

/// `pg_advisory_xact_lock` key that serializes migrations across instances.
const MIGRATION_LOCK_KEY: i64 = 0x636f_6e76_6f73_7068; // "convosph"

impl Dialect for PgConnection {
    const GREATEST: &'static str = "GREATEST";

    fn write_transaction<T, F>(&mut self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut Self) -> Result<T, StoreError>,
    {
        self.transaction(f)
    }

    fn write<T, F>(&mut self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut Self) -> Result<T, StoreError>,
    {
        f(self)
    }

    fn lock_user(&mut self, id: &str) -> Result<Option<UserRow>, StoreError> {
        // NO KEY UPDATE rather than UPDATE: it excludes the other lockers just
        // the same, but not the FOR KEY SHARE that inserting a row which
        // references the user takes.
        Ok(users::table
            .find(id)
            .select(UserRow::as_select())
            .for_no_key_update()
            .first(self)
            .optional()?)
    }

    fn existing_users(&mut self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        Ok(users::table
            .filter(users::id.eq_any(ids))
            .select(users::id)
            .for_key_share()
            .load(self)?)
    }

    fn api_key_exists(&mut self, id: &str) -> Result<bool, StoreError> {
        Ok(api_keys::table
            .find(id)
            .select(api_keys::id)
            .for_key_share()
            .first::<String>(self)
            .optional()?
            .is_some())
    }

    fn append_invalidations(&mut self, rows: &[NewInvalidation]) -> Result<(), StoreError> {
        if !rows.is_empty() {
            // Held until this transaction ends: see the trait's docs.
            diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
                .bind::<diesel::sql_types::BigInt, _>(crate::INVALIDATION_LOCK_KEY)
                .execute(self)?;
            diesel::insert_into(invalidations::table).values(rows).execute(self)?;
        }
        Ok(())
    }

    fn migrate(&mut self) -> Result<usize, StoreError> {
        self.transaction(|conn| {
            // Instances starting together: the second waits here, then finds
            // nothing pending.
            diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
                .bind::<diesel::sql_types::BigInt, _>(MIGRATION_LOCK_KEY)
                .execute(conn)?;
            conn.run_pending_migrations(crate::migrations::POSTGRES)
                .map(|applied| applied.len())
                .map_err(migration_error)
        })
    }
}

/// SQLite lets one connection write at a time. A writer that finds the
/// lock taken waits in SQLite's busy handler, which sleeps 1, 2, 5, 10, 15,
/// 20, 25… ms between its tries, although a write holds the lock for well
/// under a millisecond: under parallel writes (logins, refreshes) one write
/// in a hundred waited some 80 ms. The writers of one store therefore take
/// turns on this mutex first, which hands the turn over at once. The busy
/// handler is left for writers in other processes (the command line beside
/// a running server).
#[derive(Default)]
pub(crate) struct WriterTurns(Mutex<()>);

thread_local! {
    /// The writer turns of the SQLite store whose work this blocking thread
    /// is running ([`run_blocking_sqlite`]).
    static CURRENT_TURNS: RefCell<Option<Arc<WriterTurns>>> = const { RefCell::new(None) };
    /// Whether this thread holds its store's turn (a write inside a write).
    static HOLDING_TURN: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` in the writer turn of the store whose work this thread runs.
fn in_writer_turn<T>(f: impl FnOnce() -> T) -> T {
    /// Marks the turn held until dropped (before the turn's guard is).
    struct Holding;
    impl Drop for Holding {
        fn drop(&mut self) {
            HOLDING_TURN.set(false);
        }
    }
    let turns = CURRENT_TURNS.with_borrow(Clone::clone);
    let Some(turns) = turns.filter(|_| !HOLDING_TURN.get()) else {
        return f();
    };
    let _turn = turns.0.lock().unwrap_or_else(PoisonError::into_inner);
    HOLDING_TURN.set(true);
    let _holding = Holding;
    f()
}

/// [`run_blocking`] for SQLite: `f`'s writes take the store's turns.
pub(crate) async fn run_blocking_sqlite<T, F>(
    pool: &Pool<ConnectionManager<SqliteConnection>>,
    turns: &Arc<WriterTurns>,
    f: F,
) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&mut SqliteConnection) -> Result<T, StoreError> + Send + 'static,
{
    /// Clears the thread's store when dropped: the blocking thread goes on
    /// to run other work.
    struct Current;
    impl Drop for Current {
        fn drop(&mut self) {
            CURRENT_TURNS.set(None);
        }
    }
    let turns = Arc::clone(turns);
    run_blocking(pool, move |conn| {
        CURRENT_TURNS.set(Some(turns));
        let _current = Current;
        f(conn)
    })
    .await
}

/// Runs `f` with a pooled connection on tokio's blocking pool: diesel and
/// r2d2 block, and a blocked async worker would stall every other request.
pub(crate) async fn run_blocking<C, T, F>(pool: &Pool<ConnectionManager<C>>, f: F) -> Result<T, StoreError>
where
    C: R2D2Connection + 'static,
    T: Send + 'static,
    F: FnOnce(&mut C) -> Result<T, StoreError> + Send + 'static,
{
    let pool = pool.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = pool.get()?;
        f(&mut conn)
    })
    .await
    .map_err(|e| StoreError::Query(format!("the database task did not finish: {e}")))?
}

/// `with_conn!(store, |conn| body)`: runs `body` (a `Result<T, StoreError>`)
/// off the async runtime with `conn` bound to a pooled connection of the
/// store's backend. The body is expanded once per backend, so it is written
/// once but type-checked against both `SqliteConnection` and `PgConnection`;
/// what differs between them goes through [`Dialect`]. The body is a `move`
/// closure: give it owned values.
macro_rules! with_conn {
    ($store:expr, |$conn:ident| $body:expr) => {
        match $store.pools() {
            $crate::connection::Pools::Sqlite(pool, turns) => {
                $crate::connection::run_blocking_sqlite(
                    pool,
                    turns,
                    move |$conn: &mut ::diesel::sqlite::SqliteConnection| $body,
                )
                .await
            }
            $crate::connection::Pools::Postgres(pool) => {
                $crate::connection::run_blocking(pool, move |$conn: &mut ::diesel::pg::PgConnection| $body).await
            }
        }
    };
}
pub(crate) use with_conn;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Runs `f` on this thread as the work of the store with `turns`.
    fn as_store<T>(turns: &Arc<WriterTurns>, f: impl FnOnce() -> T) -> T {
        CURRENT_TURNS.set(Some(Arc::clone(turns)));
        let out = f();
        CURRENT_TURNS.set(None);
        out
    }

    #[test]
    fn the_writers_of_one_store_take_turns() {
        let turns = Arc::new(WriterTurns::default());
        let inside = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    as_store(&turns, || {
                        for _ in 0..50 {
                            in_writer_turn(|| {
                                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                                most.fetch_max(now, Ordering::SeqCst);
                                std::thread::yield_now();
                                inside.fetch_sub(1, Ordering::SeqCst);
                            });
                        }
                    });
                });
            }
        });
        assert_eq!(most.load(Ordering::SeqCst), 1, "one writer at a time");
    }

    #[test]
    fn a_write_inside_a_write_keeps_the_turn_and_other_stores_do_not_wait() {
        let (mine, other) = (Arc::new(WriterTurns::default()), Arc::new(WriterTurns::default()));
        let nested = as_store(&mine, || in_writer_turn(|| in_writer_turn(|| 7)));
        assert_eq!(nested, 7);
        let _held = mine.0.lock().unwrap();
        assert_eq!(
            as_store(&other, || in_writer_turn(|| 8)),
            8,
            "another store's turn is free"
        );
        assert_eq!(in_writer_turn(|| 9), 9, "work of no store takes no turn");
    }

    #[test]
    fn urls_name_their_backend() {
        assert_eq!(
            Target::parse("sqlite://./data/auth.db").ok(),
            Some(Target::Sqlite("./data/auth.db".into()))
        );
        assert_eq!(
            Target::parse("sqlite:///var/lib/auth.db").ok(),
            Some(Target::Sqlite("/var/lib/auth.db".into()))
        );
        assert_eq!(
            Target::parse("postgresql://u@h/db").ok(),
            Some(Target::Postgres("postgresql://u@h/db".into()))
        );
        assert!(Target::parse("postgres://u@h/db").is_ok());
        for bad in ["", "sqlite://", "mysql://h/db", "auth.db"] {
            assert!(matches!(Target::parse(bad), Err(StoreError::UnsupportedUrl)), "{bad}");
        }
    }
}
