//! What can go wrong.

/// Why the mail service could not start: a configuration mistake.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// `AUTH_MAIL_FROM` is not an address.
    #[error("the sender `{0}` is not a valid address")]
    InvalidFrom(String),
    /// `AUTH_SMTP_URL` is malformed (the URL itself is not repeated: it may hold a password).
    #[error("invalid SMTP URL: {0}")]
    InvalidSmtpUrl(String),
    /// The TLS settings or an extra root certificate are unusable.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// `MailService::start` was called outside a Tokio runtime.
    #[error("the mail service must be started inside a Tokio runtime")]
    NoRuntime,
}

/// Why one delivery attempt failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeliveryError {
    #[error("SMTP: {0}")]
    Smtp(lettre::transport::smtp::Error),
    #[error("outbox: {0}")]
    Outbox(String),
}

impl DeliveryError {
    /// A failure no retry can mend: the server refused for good (5xx).
    pub(crate) fn is_permanent(&self) -> bool {
        match self {
            DeliveryError::Smtp(error) => error.is_permanent(),
            DeliveryError::Outbox(_) => false,
        }
    }
}
