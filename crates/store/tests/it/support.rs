//! The per-test databases, and values to store.

use chrono::{DateTime, Duration, Utc};
use convosphere_domain::api_key::{ApiKey, ApiKeyId, SecretHash};
use convosphere_domain::ports::{NewSession, RefreshOutcome, SessionRepository};
use convosphere_domain::{
    AuthMethod, Email, EventId, EventKind, NewUser, PasswordHash, Plan, SecurityEvent, Session, SessionId, TokenHash,
    UserId,
};
use convosphere_store::Store;
use diesel::{Connection, PgConnection, RunQueryDsl};
use std::future::Future;

/// A migrated store on a database of its own, removed when dropped.
pub struct TestDb {
    pub store: Store,
    /// The URL the store was opened with.
    pub url: String,
    _guard: Guard,
}

/// `session` to open with `refresh` and the sign-in `event`, at most
/// `cap` active, the idle rule at its start.
pub fn new_session<'a>(
    session: &'a Session,
    refresh: &'a TokenHash,
    cap: u32,
    event: &'a SecurityEvent,
) -> NewSession<'a> {
    NewSession {
        session,
        refresh,
        max_active: cap,
        idle_cutoff: idle_cutoff(session.created_at),
        signed_in: event,
    }
}

/// Sessions end after 24 h without use.
pub fn idle_cutoff(now: DateTime<Utc>) -> DateTime<Utc> {
    now - Duration::hours(24)
}

impl TestDb {
    /// Opens `session` with `refresh` as its sign-in did (at most `cap` active,
    /// the idle rule at its start); the sessions it ended.
    pub async fn open(&self, session: &Session, refresh: &TokenHash, cap: u32) -> Vec<SessionId> {
        let event = signed_in(session);
        self.store
            .create_session(&new_session(session, refresh, cap, &event))
            .await
            .unwrap()
    }

    /// Presents `presented` at `now`, to be replaced by `replacement`.
    pub async fn rotate(&self, presented: &TokenHash, replacement: &TokenHash, now: DateTime<Utc>) -> RefreshOutcome {
        let cutoff = idle_cutoff(now);
        self.store
            .rotate_refresh_token(presented, replacement, now, cutoff)
            .await
            .unwrap()
    }
}

enum Guard {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { server_url: String, name: String },
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Guard::Postgres { server_url, name } = self {
            match PgConnection::establish(server_url) {
                Ok(mut conn) => {
                    let dropped =
                        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn);
                    if let Err(e) = dropped {
                        eprintln!("could not drop the test database {name}: {e}");
                    }
                }
                Err(e) => eprintln!("could not drop the test database {name}: {e}"),
            }
        }
    }
}

/// A fresh SQLite file in a temporary directory.
pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("auth.db").display());
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    TestDb {
        store,
        url,
        _guard: Guard::Sqlite(dir),
    }
}

/// `url` with its database name replaced.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let (scheme, rest) = base.split_once("://").expect("a URL with ://");
    let authority = rest.split_once('/').map_or(rest, |(authority, _)| authority);
    match query {
        Some(query) => format!("{scheme}://{authority}/{name}?{query}"),
        None => format!("{scheme}://{authority}/{name}"),
    }
}

/// A fresh database `convosphere_test_<random>` on the server named by
/// `TEST_DATABASE_URL`; `None` (with a notice) when the variable is unset.
pub async fn postgres() -> Option<TestDb> {
    let Ok(server_url) = std::env::var("TEST_DATABASE_URL") else {
        eprintln!("TEST_DATABASE_URL is not set: skipping the PostgreSQL run of this test");
        return None;
    };
    let name = format!("convosphere_test_{:016x}", rand::random::<u64>());
    let create = {
        let (server_url, name) = (server_url.clone(), name.clone());
        tokio::task::spawn_blocking(move || {
            let mut conn = PgConnection::establish(&server_url).expect("TEST_DATABASE_URL answers");
            diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut conn)
        })
    };
    create.await.unwrap().unwrap();
    // From here on the guard drops the database, even if the test fails.
    let guard = Guard::Postgres {
        server_url: server_url.clone(),
        name: name.clone(),
    };
    let url = with_database(&server_url, &name);
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    Some(TestDb {
        store,
        url,
        _guard: guard,
    })
}

/// Declares each listed `async fn name(db: TestDb)` as two tests,
/// `name::sqlite` and `name::postgres`.
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    super::$name($crate::support::sqlite().await).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    if let Some(db) = $crate::support::postgres().await {
                        super::$name(db).await;
                    }
                }
            }
        )+
    };
}

/// A fixed instant with microseconds, the precision both backends keep.
pub fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_900_000_000, 123_456_000).unwrap()
}

pub fn minutes(n: i64) -> Duration {
    Duration::minutes(n)
}

fn random_uuid() -> uuid::Uuid {
    uuid::Uuid::from_u128(rand::random())
}

pub fn token() -> TokenHash {
    TokenHash(rand::random())
}

pub fn new_user(email: &str) -> NewUser {
    NewUser {
        id: UserId::from_uuid(random_uuid()),
        name: "Ada Lovelace".into(),
        email: Email::parse(email).unwrap(),
        email_verified: false,
        password_hash: Some(PasswordHash::from_phc("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA")),
        company: Some("Analytical Engines".into()),
        country: None,
        phone: None,
        plan: Plan::Free,
        created_at: t0(),
    }
}

/// A stored account.
pub async fn user(store: &Store, email: &str) -> UserId {
    use convosphere_domain::ports::UserRepository;
    store.create_user(&new_user(email)).await.unwrap().id
}

/// A session of `user` opened at `at`, lasting a week.
pub fn session(user: UserId, at: DateTime<Utc>) -> Session {
    Session {
        id: SessionId::from_uuid(random_uuid()),
        user_id: user,
        created_at: at,
        last_active_at: at,
        expires_at: at + Duration::days(7),
        ended_at: None,
        end_reason: None,
        ip: Some("203.0.113.7".into()),
        user_agent: Some("integration test".into()),
        auth_time: at,
        amr: vec![AuthMethod::Password],
    }
}

/// An event of `user`'s trail at `at`, from a fixed client.
pub fn event_at(user: UserId, kind: EventKind, at: DateTime<Utc>, details: &[(&str, &str)]) -> SecurityEvent {
    SecurityEvent {
        id: EventId::from_uuid(
            uuid::Builder::from_unix_timestamp_millis(at.timestamp_millis() as u64, &rand::random()).into_uuid(),
        ),
        user_id: user,
        kind,
        at,
        ip: Some("203.0.113.7".into()),
        user_agent: Some("curl/8".into()),
        details: details.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
    }
}

/// The `login_succeeded` event of the sign-in that opens `session`.
pub fn signed_in(session: &Session) -> SecurityEvent {
    event_at(
        session.user_id,
        EventKind::LoginSucceeded,
        session.created_at,
        &[("method", "password")],
    )
}

/// An active API key of `user` created at `at`, with a random public id
/// and secret hash, two scopes and no expiry.
pub fn api_key(user: UserId, at: DateTime<Utc>) -> ApiKey {
    const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let public_id = (0..8)
        .map(|_| char::from(BASE62[rand::random::<usize>() % BASE62.len()]))
        .collect();
    ApiKey {
        id: ApiKeyId::from_uuid(random_uuid()),
        user_id: user,
        name: "CI deploys".into(),
        public_id,
        secret_hash: SecretHash(rand::random()),
        scopes: "agents:read chat:write".parse().unwrap(),
        created_at: at,
        expires_at: None,
        last_used_at: None,
        revoked_at: None,
    }
}

/// Runs `n` calls of `call` at once, each in its own task; their answers in task order.
pub async fn in_parallel<T, F, Fut>(n: usize, call: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let barrier = barrier.clone();
            let call = call(i);
            tokio::spawn(async move {
                barrier.wait().await;
                call.await
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(n);
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

#[test]
fn test_database_urls_keep_everything_but_the_name() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "t"),
        "postgres://postgres@127.0.0.1:5432/t"
    );
    assert_eq!(
        with_database("postgresql://u:p@h/db?sslmode=disable", "t"),
        "postgresql://u:p@h/t?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "t"), "postgres://h/t");
}
