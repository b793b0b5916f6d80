//! The queue, the worker and its retries.

use crate::config::{MailConfig, RetryPolicy, Transport};
use crate::error::MailError;
use crate::templates::{display_name, primary_link, Templates};
use crate::transport::{parse_smtp_url, smtp_transport, Delivered, Delivery};
use convosphere_domain::error::Unavailable;
use convosphere_domain::ports::{Mail, Mailer};
use convosphere_domain::InfraError;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox, Message, MultiPart, SinglePart};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Semaphore};

/// The mail service: implements [`Mailer`] by queueing, and delivers in the
/// background with retries. Cheap to clone; every clone feeds one queue.
#[derive(Clone)]
pub struct MailService {
    queue: mpsc::Sender<Job>,
    shared: Arc<Shared>,
    templates: Templates,
    from: Mailbox,
    message_id_domain: Arc<str>,
    enqueue_timeout: Duration,
}

impl std::fmt::Debug for MailService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailService")
            .field("from", &self.from.to_string())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Counters of the mail service, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailStats {
    /// Messages delivered (to the SMTP server or the outbox).
    pub sent: u64,
    /// Messages given up on, after every retry or at a permanent refusal.
    pub failed: u64,
    /// Failed attempts that were tried again.
    pub retried: u64,
    /// Messages accepted and not yet delivered or given up (queued or in flight).
    pub pending: u64,
}

/// What the worker and the handles share.
struct Shared {
    sent: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    /// Queued plus in flight; `shutdown` waits for zero.
    pending: watch::Sender<u64>,
    closed: AtomicBool,
}

impl Shared {
    fn finished(&self) {
        self.pending.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// One message on its way.
struct Job {
    message: Message,
    kind: &'static str,
    /// Only to blank it out of server answers before they are logged.
    recipient: String,
    recipient_domain: String,
    /// Logged in outbox mode only.
    link: String,
}

impl MailService {
    /// Checks the configuration and starts the background worker on the
    /// current Tokio runtime. Nothing is sent or connected yet: an
    /// unreachable SMTP server shows only when mail is delivered.
    pub fn start(config: MailConfig) -> Result<Self, MailError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| MailError::NoRuntime)?;
        let from: Mailbox = config
            .from
            .trim()
            .parse()
            .map_err(|_| MailError::InvalidFrom(config.from.clone()))?;
        let (delivery, concurrency) = match &config.transport {
            Transport::Smtp(url) => {
                let target = parse_smtp_url(url)?;
                let transport = smtp_transport(&target, config.smtp_timeout, &config.tls_root_certificates)?;
                (Delivery::Smtp(transport), config.max_concurrent_sends.max(1))
            }
            Transport::Outbox(dir) => (Delivery::Outbox(dir.clone()), 1),
        };
        let (queue, receiver) = mpsc::channel(config.queue_capacity.max(1));
        let shared = Arc::new(Shared {
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            pending: watch::Sender::new(0),
            closed: AtomicBool::new(false),
        });
        runtime.spawn(worker(
            receiver,
            delivery,
            config.retry,
            Arc::new(Semaphore::new(concurrency)),
            Arc::clone(&shared),
        ));
        Ok(Self {
            queue,
            shared,
            templates: Templates::new(
                config.email_verify_ttl,
                config.password_reset_ttl,
                config.email_change_ttl,
            ),
            message_id_domain: Arc::from(from.email.domain()),
            from,
            enqueue_timeout: config.enqueue_timeout,
        })
    }

    /// The counters so far.
    pub fn stats(&self) -> MailStats {
        MailStats {
            sent: self.shared.sent.load(Ordering::Relaxed),
            failed: self.shared.failed.load(Ordering::Relaxed),
            retried: self.shared.retried.load(Ordering::Relaxed),
            pending: *self.shared.pending.borrow(),
        }
    }

    /// Stops accepting mail and waits up to `deadline` for the queued mail to
    /// be delivered (or given up). Returns how many messages were still
    /// pending at the deadline (0 when everything went out).
    pub async fn shutdown(&self, deadline: Duration) -> u64 {
        self.shared.closed.store(true, Ordering::SeqCst);
        let mut pending = self.shared.pending.subscribe();
        let drained = tokio::time::timeout(deadline, pending.wait_for(|n| *n == 0)).await;
        let left = *self.shared.pending.borrow();
        if drained.is_err() && left > 0 {
            tracing::warn!(pending = left, "mail still undelivered at shutdown");
        }
        left
    }

    /// Renders a mail into the message that goes out.
    fn compose(&self, mail: &Mail) -> Result<Message, InfraError> {
        let rendered = self.templates.render(mail);
        let address = mail
            .to()
            .as_str()
            .parse()
            .map_err(|e| InfraError::new(format!("recipient of a {} mail: {e}", mail.kind())))?;
        let name = display_name(mail.name());
        let to = Mailbox::new((!name.is_empty()).then_some(name), address);
        let part = |content_type: ContentType, text: String| -> Result<SinglePart, InfraError> {
            // Quoted-printable keeps the link readable in the raw message (a
            // developer can copy it out of an .eml) and is safe for any text.
            let body = Body::new_with_encoding(text, ContentTransferEncoding::QuotedPrintable)
                .map_err(|_| InfraError::new("cannot encode a mail body"))?;
            Ok(SinglePart::builder().header(content_type).body(body))
        };
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(rendered.subject)
            .message_id(Some(format!("<{}@{}>", uuid::Uuid::new_v4(), self.message_id_domain)))
            .multipart(
                MultiPart::alternative()
                    .singlepart(part(ContentType::TEXT_PLAIN, rendered.text)?)
                    .singlepart(part(ContentType::TEXT_HTML, rendered.html)?),
            )
            .map_err(|e| InfraError::new(format!("cannot build a {} mail: {e}", mail.kind())))
    }

    async fn enqueue(&self, mail: Mail) -> Result<(), InfraError> {
        if self.shared.closed.load(Ordering::SeqCst) {
            return Err(Unavailable("the mail service is shutting down".into()).into());
        }
        let job = Job {
            message: self.compose(&mail)?,
            kind: mail.kind(),
            recipient: mail.to().as_str().to_owned(),
            recipient_domain: recipient_domain(&mail).to_owned(),
            link: primary_link(&mail).to_owned(),
        };
        self.shared.pending.send_modify(|n| *n += 1);
        match self.queue.send_timeout(job, self.enqueue_timeout).await {
            Ok(()) => Ok(()),
            Err(error) => {
                self.shared.finished();
                let why = match error {
                    mpsc::error::SendTimeoutError::Timeout(_) => "the mail queue is full",
                    mpsc::error::SendTimeoutError::Closed(_) => "the mail worker has stopped",
                };
                tracing::error!(kind = mail.kind(), recipient_domain = recipient_domain(&mail), "{why}");
                Err(Unavailable(why.into()).into())
            }
        }
    }
}

impl Mailer for MailService {
    /// Queues the mail and returns; delivery happens in the background.
    fn send(&self, mail: Mail) -> impl Future<Output = Result<(), InfraError>> + Send {
        self.enqueue(mail)
    }
}

/// The part of the address after `@`: enough to tell a provider's outage
/// from a typo, without logging who.
fn recipient_domain(mail: &Mail) -> &str {
    let address = mail.to().as_str();
    address.rsplit_once('@').map_or(address, |(_, domain)| domain)
}

/// Takes messages off the queue and delivers each in its own task, at most
/// `limit` at once. Ends when every handle is dropped and the queue is empty.
async fn worker(
    mut receiver: mpsc::Receiver<Job>,
    delivery: Delivery,
    retry: RetryPolicy,
    limit: Arc<Semaphore>,
    shared: Arc<Shared>,
) {
    while let Some(job) = receiver.recv().await {
        let Ok(permit) = Arc::clone(&limit).acquire_owned().await else {
            break;
        };
        let delivery = delivery.clone();
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            deliver_with_retries(&delivery, &job, retry, &shared).await;
            shared.finished();
            drop(permit);
        });
    }
}

async fn deliver_with_retries(delivery: &Delivery, job: &Job, retry: RetryPolicy, shared: &Shared) {
    let attempts = retry.attempts.max(1);
    let kind = job.kind;
    let recipient_domain = job.recipient_domain.as_str();
    for attempt in 1..=attempts {
        // A server's answer may quote the address ("550 <ada@…> unknown"): logs get the domain only.
        let outcome = delivery
            .deliver(&job.message)
            .await
            .map_err(|e| (e.is_permanent(), e.to_string().replace(&job.recipient, "<recipient>")));
        match outcome {
            Ok(Delivered::Outbox(path)) => {
                shared.sent.fetch_add(1, Ordering::Relaxed);
                // The one place a link is logged: a developer without SMTP
                // gets it here. Never in SMTP mode.
                tracing::info!(kind, path = %path.display(), link = %job.link, "mail written to outbox");
                return;
            }
            Ok(Delivered::Smtp) => {
                shared.sent.fetch_add(1, Ordering::Relaxed);
                tracing::info!(kind, recipient_domain, attempt, "mail sent");
                return;
            }
            Err((true, error)) => {
                shared.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(kind, recipient_domain, attempt, %error, "mail refused for good; giving up");
                return;
            }
            Err((false, error)) if attempt < attempts => {
                shared.retried.fetch_add(1, Ordering::Relaxed);
                let backoff = retry.backoff(attempt);
                tracing::warn!(kind, recipient_domain, attempt, retry_in = ?backoff, %error, "mail delivery failed; will retry");
                tokio::time::sleep(backoff).await;
            }
            Err((false, error)) => {
                shared.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(kind, recipient_domain, attempts, %error, "mail delivery failed; giving up");
            }
        }
    }
}
