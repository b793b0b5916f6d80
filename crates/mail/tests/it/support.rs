//! What the tests share: sample mails, configurations, parsing, log capture.

use convosphere_domain::ports::Mail;
use convosphere_domain::Email;
use convosphere_mail::{MailConfig, RetryPolicy, Transport};
use mail_parser::{MessageParser, MimeHeaders};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const VERIFY_LINK: &str = "http://auth.test/verify-email?token=Q2hhbmdlIG1lIHRvIGEgcmVhbCB0b2tlbiBwbGVhc2UhIQ";
pub const RESET_LINK: &str = "http://auth.test/reset-password?token=UmVzZXQgdG9rZW4gd2l0aCAyNTYgYml0cyBvZiBlbnRyb3B5";
pub const LOGIN_LINK: &str = "http://auth.test/login";
pub const FORGOT_LINK: &str = "http://auth.test/forgot-password";

pub fn email(address: &str) -> Email {
    Email::parse(address).unwrap()
}

pub fn verify_email(to: &str) -> Mail {
    Mail::VerifyEmail {
        to: email(to),
        name: "Ada Lovelace".into(),
        link: VERIFY_LINK.into(),
    }
}

pub fn password_reset(to: &str) -> Mail {
    Mail::PasswordReset {
        to: email(to),
        name: "Ada Lovelace".into(),
        link: RESET_LINK.into(),
    }
}

pub fn signup_attempt(to: &str) -> Mail {
    Mail::SignupAttempt {
        to: email(to),
        name: "Ada Lovelace".into(),
        login_link: LOGIN_LINK.into(),
        forgot_link: FORGOT_LINK.into(),
    }
}

pub fn password_changed(to: &str) -> Mail {
    Mail::PasswordChanged {
        to: email(to),
        name: "Ada Lovelace".into(),
        forgot_link: FORGOT_LINK.into(),
    }
}

/// Fast retries, so that the tests wait milliseconds, not seconds.
pub fn fast_retries(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        attempts,
        initial_backoff: Duration::from_millis(25),
        max_backoff: Duration::from_millis(200),
    }
}

pub fn smtp_config(url: String) -> MailConfig {
    MailConfig {
        transport: Transport::Smtp(url),
        smtp_timeout: Duration::from_secs(2),
        retry: fast_retries(3),
        ..MailConfig::default()
    }
}

pub fn outbox_config(dir: &Path) -> MailConfig {
    MailConfig {
        transport: Transport::Outbox(dir.to_path_buf()),
        retry: fast_retries(3),
        ..MailConfig::default()
    }
}

/// A message, parsed back the way a mail client would.
pub struct Parsed {
    pub subject: String,
    pub from: (Option<String>, String),
    pub to: (Option<String>, String),
    pub content_type: String,
    pub text: String,
    pub html: String,
    pub message_id: String,
}

pub fn parse(raw: &[u8]) -> Parsed {
    let message = MessageParser::default()
        .parse(raw)
        .expect("a parseable RFC 5322 message");
    let address = |a: Option<&mail_parser::Address<'_>>| {
        let first = a.and_then(|a| a.first()).expect("an address");
        (first.name().map(str::to_owned), first.address().unwrap().to_owned())
    };
    let root = message.root_part().content_type().expect("a Content-Type");
    assert_eq!(message.text_body_count(), 1, "one text/plain part");
    assert_eq!(message.html_body_count(), 1, "one text/html part");
    let text_part = message.text_part(0).unwrap();
    let html_part = message.html_part(0).unwrap();
    let kind = |part: &mail_parser::MessagePart<'_>| {
        let ct = part.content_type().unwrap();
        format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""))
    };
    assert_eq!(kind(text_part), "text/plain");
    assert_eq!(kind(html_part), "text/html");
    Parsed {
        subject: message.subject().unwrap_or_default().to_owned(),
        from: address(message.from()),
        to: address(message.to()),
        content_type: format!("{}/{}", root.ctype(), root.subtype().unwrap_or("")),
        // MIME line breaks are CRLF; compare text with plain newlines.
        text: text_part.text_contents().unwrap().replace("\r\n", "\n"),
        html: html_part.text_contents().unwrap().replace("\r\n", "\n"),
        message_id: message.message_id().unwrap_or_default().to_owned(),
    }
}

/// Everything logged while the guard lives, on this thread (the tests run
/// on a current-thread runtime, so the mail worker logs here too).
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    pub fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        let logs = Self::default();
        let sink = Arc::clone(&logs.0);
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || LogWriter(Arc::clone(&sink)))
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Waits until `check` holds, for up to 10 s.
pub async fn eventually(mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the condition never held");
}
