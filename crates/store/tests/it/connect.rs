//! Connecting, migrating, and reporting an unreachable database.

use crate::support::TestDb;
use convosphere_domain::InfraError;
use convosphere_store::{Backend, Store, StoreError};

on_both_backends!(migrating_again_changes_nothing, a_connected_store_answers_pings);

async fn migrating_again_changes_nothing(db: TestDb) {
    assert_eq!(db.store.migrate().await.unwrap(), 0);
    // A second instance starting on the same database.
    let other = Store::connect(&db.url).await.unwrap();
    assert_eq!(other.migrate().await.unwrap(), 0);
}

async fn a_connected_store_answers_pings(db: TestDb) {
    db.store.ping().await.unwrap();
    let expected = if db.url.starts_with("sqlite://") {
        Backend::Sqlite
    } else {
        Backend::Postgres
    };
    assert_eq!(db.store.backend(), expected);
    assert!(!format!("{:?}", db.store).contains(&db.url));
}

#[tokio::test]
async fn a_fresh_sqlite_store_creates_its_directory_and_migrates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/data/auth.db");
    let store = Store::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    assert!(path.exists());
    assert!(store.migrate().await.unwrap() >= 1);
    assert_eq!(store.migrate().await.unwrap(), 0);
}

#[tokio::test]
async fn an_unreachable_database_is_reported_unavailable() {
    // Nothing listens on port 1.
    let error = Store::connect("postgres://postgres@127.0.0.1:1/convosphere")
        .await
        .unwrap_err();
    assert!(error.is_unavailable(), "{error}");
    assert!(!error.to_string().contains("postgres://"), "{error}");
    assert!(InfraError::from(error).is_unavailable());

    let error = Store::connect("sqlite:///proc/no/such/dir/auth.db").await.unwrap_err();
    assert!(error.is_unavailable(), "{error}");
}

#[tokio::test]
async fn an_unknown_url_scheme_is_refused() {
    for url in ["mysql://localhost/auth", "auth.db", "sqlite://"] {
        let error = Store::connect(url).await.unwrap_err();
        assert!(matches!(error, StoreError::UnsupportedUrl), "{url}: {error}");
        assert!(!error.is_unavailable());
    }
}

#[tokio::test]
async fn queries_on_a_lost_postgres_database_are_unavailable() {
    use convosphere_domain::ports::UserRepository;
    use diesel::{Connection, PgConnection, RunQueryDsl};

    let Some(db) = crate::support::postgres().await else {
        return;
    };
    let server_url = std::env::var("TEST_DATABASE_URL").unwrap();
    let name = db.url.rsplit('/').next().unwrap().to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn = PgConnection::establish(&server_url).unwrap();
        diesel::sql_query(format!("DROP DATABASE {name} WITH (FORCE)")).execute(&mut conn)
    })
    .await
    .unwrap()
    .unwrap();

    // Both wait out the pool's checkout timeout, together.
    let someone = convosphere_domain::UserId::from_uuid(uuid::Uuid::from_u128(7));
    let (query, ping) = tokio::join!(db.store.user_by_id(someone), db.store.ping());
    let error = query.unwrap_err();
    assert!(error.is_unavailable(), "{error}");
    assert!(ping.unwrap_err().is_unavailable());
}
