//! The store's error type, and how it becomes the domain's [`InfraError`].

use convosphere_domain::error::Unavailable;
use convosphere_domain::InfraError;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// What went wrong in the store.
///
/// It carries messages, never diesel's types: nothing above this crate
/// depends on diesel. Messages hold no secrets (no URLs, no bound values).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is neither `sqlite://PATH` nor `postgres://…`.
    #[error("unsupported database URL: expected sqlite://PATH or postgres://…")]
    UnsupportedUrl,
    /// The database cannot be reached (refused, timed out, closed, busy past the timeout).
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// A migration failed.
    #[error("{0}")]
    Migration(String),
    /// A query failed for another reason.
    #[error("database error: {0}")]
    Query(String),
    /// A stored value could not be read back into a domain value.
    #[error("invalid stored data: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether the database could not be reached: the app answers 503.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    pub(crate) fn corrupt(what: impl std::fmt::Display) -> Self {
        Self::Corrupt(what.to_string())
    }
}

impl From<DieselError> for StoreError {
    fn from(error: DieselError) -> Self {
        match &error {
            DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                _,
            ) => Self::Unavailable(error.to_string()),
            // SQLITE_BUSY after busy_timeout: the writer lock stayed taken.
            DieselError::DatabaseError(_, info) if info.message().contains("database is locked") => {
                Self::Unavailable(error.to_string())
            }
            _ => Self::Query(error.to_string()),
        }
    }
}

impl From<diesel::r2d2::PoolError> for StoreError {
    fn from(error: diesel::r2d2::PoolError) -> Self {
        Self::Unavailable(format!("no connection from the pool: {error}"))
    }
}

impl From<diesel::ConnectionError> for StoreError {
    fn from(error: diesel::ConnectionError) -> Self {
        Self::Unavailable(error.to_string())
    }
}

impl From<StoreError> for InfraError {
    fn from(error: StoreError) -> Self {
        match error {
            // The domain recognises unavailability by this marker type.
            StoreError::Unavailable(message) => Unavailable(format!("database: {message}")).into(),
            other => InfraError::new(other),
        }
    }
}
