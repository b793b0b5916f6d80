//! Errors shared by every use case.

use std::fmt;

/// An infrastructure failure behind a port (database down, SMTP refused…).
///
/// It is opaque on purpose: callers log it and answer "internal", they never
/// branch on it. Its message is for operators and must not hold secrets.
pub struct InfraError(Box<dyn std::error::Error + Send + Sync + 'static>);

impl InfraError {
    /// Wraps any error of an adapter.
    pub fn new(source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self(source.into())
    }

    /// Whether the failure means the backing service could not be reached
    /// (the app answers 503 instead of 500 for those).
    pub fn is_unavailable(&self) -> bool {
        self.0.downcast_ref::<Unavailable>().is_some()
    }
}

impl fmt::Debug for InfraError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfraError({})", self.0)
    }
}

impl fmt::Display for InfraError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for InfraError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// Marks an [`InfraError`] as "the backing service is unreachable".
#[derive(Debug, thiserror::Error)]
#[error("service unavailable: {0}")]
pub struct Unavailable(pub String);

impl From<Unavailable> for InfraError {
    fn from(value: Unavailable) -> Self {
        Self::new(value)
    }
}

/// One problem with one input field, as the API reports it in `errors`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's name in the request body (`password`, `email`…).
    pub field: &'static str,
    /// A stable, machine-readable code (`required`, `too_long`…).
    pub code: &'static str,
    /// A sentence for people.
    pub message: String,
}

impl FieldError {
    /// A new field error.
    pub fn new(field: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            code,
            message: message.into(),
        }
    }
}
