//! What the mail service needs to know.

use std::path::PathBuf;
use std::time::Duration;

/// The default sender (`AUTH_MAIL_FROM`).
pub const DEFAULT_FROM: &str = "Convosphere AI <no-reply@localhost>";

/// Where mail goes.
#[derive(Clone, PartialEq, Eq)]
pub enum Transport {
    /// An SMTP server (`AUTH_SMTP_URL`):
    ///
    /// - `smtp://host:port`: plain SMTP (port 25 if omitted),
    /// - `smtp://host:port?tls=starttls`: STARTTLS, required (port 587 if omitted);
    ///   `tls=opportunistic` upgrades only when the server offers it,
    /// - `smtps://host:port`: implicit TLS (port 465 if omitted).
    ///
    /// Each takes `user:password@` (percent-encoded) for `AUTH PLAIN`/`LOGIN`.
    Smtp(String),
    /// A directory: every message becomes `<timestamp>-<uuid>.eml` in it and
    /// its link is logged. The local-development default
    /// (`<AUTH_DATA_DIR>/outbox`).
    Outbox(PathBuf),
}

impl std::fmt::Debug for Transport {
    /// Never shows the SMTP password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Smtp(url) => f.debug_tuple("Smtp").field(&redact_password(url)).finish(),
            Transport::Outbox(dir) => f.debug_tuple("Outbox").field(dir).finish(),
        }
    }
}

/// The URL with its password replaced by `***`.
fn redact_password(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            // Setting a password only fails for URLs that cannot have one.
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        Ok(url) => url.to_string(),
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

/// How often and how patiently a failed delivery is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included (at least one).
    pub attempts: u32,
    /// The wait after the first failure; it doubles after each further one.
    pub initial_backoff: Duration,
    /// The longest wait between two tries.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// Five tries, 1 s, 2 s, 4 s and 8 s apart.
    fn default() -> Self {
        Self {
            attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait after the `failures`-th failure (1-based).
    pub fn backoff(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1));
        self.initial_backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// The mail service's configuration.
///
/// ```
/// use convosphere_mail::{MailConfig, Transport};
/// use std::time::Duration;
///
/// let config = MailConfig {
///     transport: Transport::Smtp("smtps://mailer:s3cret@smtp.example.com".into()),
///     email_verify_ttl: Duration::from_secs(24 * 3600),
///     ..MailConfig::default()
/// };
/// assert!(!format!("{config:?}").contains("s3cret"));
/// ```
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// The sender, `Name <address>` or a bare address (`AUTH_MAIL_FROM`).
    pub from: String,
    /// Where mail goes.
    pub transport: Transport,
    /// How long a verification link works, as the e-mail tells (`AUTH_EMAIL_VERIFY_TTL`).
    pub email_verify_ttl: Duration,
    /// How long a reset link works, as the e-mail tells (`AUTH_PASSWORD_RESET_TTL`).
    pub password_reset_ttl: Duration,
    /// How long a change-of-address link works, as the e-mail tells (`AUTH_EMAIL_CHANGE_TTL`).
    pub email_change_ttl: Duration,
    /// The limit on connecting and on each SMTP command.
    pub smtp_timeout: Duration,
    /// Extra certificate authorities (PEM) to trust for SMTP over TLS, besides
    /// the system's: a private relay's CA, or a test's.
    pub tls_root_certificates: Vec<Vec<u8>>,
    /// Retries of failed deliveries.
    pub retry: RetryPolicy,
    /// Messages accepted but not yet sent, at most.
    pub queue_capacity: usize,
    /// How long `send` waits for room in a full queue before it fails.
    pub enqueue_timeout: Duration,
    /// SMTP deliveries in flight at once (the outbox writes one at a time,
    /// so that its files keep the order of sending).
    pub max_concurrent_sends: usize,
}

impl Default for MailConfig {
    /// The outbox in `./data/outbox`, the contract's link lifetimes, 5 tries.
    fn default() -> Self {
        Self {
            from: DEFAULT_FROM.to_owned(),
            transport: Transport::Outbox(PathBuf::from("./data/outbox")),
            email_verify_ttl: Duration::from_secs(24 * 3600),
            password_reset_ttl: Duration::from_secs(3600),
            email_change_ttl: Duration::from_secs(24 * 3600),
            smtp_timeout: Duration::from_secs(10),
            tls_root_certificates: Vec::new(),
            retry: RetryPolicy::default(),
            queue_capacity: 1024,
            enqueue_timeout: Duration::from_secs(2),
            max_concurrent_sends: 4,
        }
    }
}
