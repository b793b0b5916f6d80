//! Delivery: SMTP through lettre, or files in an outbox directory.

use crate::error::{DeliveryError, MailError};
use lettre::message::Message;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use percent_encoding::percent_decode_str;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Security {
    /// Plain text (`smtp://`).
    None,
    /// STARTTLS, refusing servers that do not offer it (`?tls=starttls`).
    StartTls,
    /// STARTTLS when offered, else plain (`?tls=opportunistic`).
    Opportunistic,
    /// TLS from the first byte (`smtps://`).
    Implicit,
}

/// An `AUTH_SMTP_URL`, parsed.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SmtpTarget {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for SmtpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .finish_non_exhaustive()
    }
}

/// Parses `smtp://[user:pass@]host[:port][?tls=starttls|opportunistic|none]`
/// and `smtps://[user:pass@]host[:port]`. Errors never repeat the URL (it
/// may hold a password).
pub(crate) fn parse_smtp_url(raw: &str) -> Result<SmtpTarget, MailError> {
    let bad = |why: &str| MailError::InvalidSmtpUrl(why.to_owned());
    let url = url::Url::parse(raw.trim()).map_err(|e| MailError::InvalidSmtpUrl(e.to_string()))?;
    let mut tls: Option<String> = None;
    for (key, value) in url.query_pairs() {
        match &*key {
            "tls" if tls.is_none() => tls = Some(value.into_owned()),
            "tls" => return Err(bad("`tls` is given twice")),
            other => {
                return Err(MailError::InvalidSmtpUrl(format!(
                    "unknown parameter `{other}` (only `tls`)"
                )))
            }
        }
    }
    let security = match (url.scheme(), tls.as_deref()) {
        ("smtp", None | Some("none")) => Security::None,
        ("smtp", Some("starttls" | "required")) => Security::StartTls,
        ("smtp", Some("opportunistic")) => Security::Opportunistic,
        ("smtps", None | Some("implicit" | "wrapper")) => Security::Implicit,
        ("smtp", Some(_)) => return Err(bad("`tls` must be `starttls`, `opportunistic` or `none`")),
        ("smtps", Some(_)) => return Err(bad("`smtps://` is implicit TLS and takes no `tls` parameter")),
        _ => return Err(bad("the scheme must be `smtp://` or `smtps://`")),
    };
    let host = match url.host() {
        Some(url::Host::Domain(domain)) if !domain.is_empty() => domain.to_owned(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        _ => return Err(bad("a host is required")),
    };
    if !matches!(url.path(), "" | "/") || url.fragment().is_some() {
        return Err(bad("a path or fragment is not allowed"));
    }
    let port = url.port().unwrap_or(match security {
        Security::None => 25,
        Security::StartTls | Security::Opportunistic => 587,
        Security::Implicit => 465,
    });
    let decode = |part: &str, what: &str| {
        percent_decode_str(part)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| MailError::InvalidSmtpUrl(format!("the {what} is not UTF-8 once percent-decoded")))
    };
    let credentials = if url.username().is_empty() && url.password().is_none() {
        None
    } else {
        let user = decode(url.username(), "user name")?;
        let password = decode(url.password().unwrap_or(""), "password")?;
        Some((user, password))
    };
    Ok(SmtpTarget {
        host,
        port,
        security,
        credentials,
    })
}

/// Builds lettre's transport for a target.
pub(crate) fn smtp_transport(
    target: &SmtpTarget,
    timeout: Duration,
    roots: &[Vec<u8>],
) -> Result<AsyncSmtpTransport<Tokio1Executor>, MailError> {
    let tls_parameters = || -> Result<TlsParameters, MailError> {
        let mut builder = TlsParameters::builder(target.host.clone());
        for pem in roots {
            let certificate = Certificate::from_pem(pem).map_err(|e| MailError::Tls(e.to_string()))?;
            builder = builder.add_root_certificate(certificate);
        }
        builder.build().map_err(|e| MailError::Tls(e.to_string()))
    };
    let tls = match target.security {
        Security::None => Tls::None,
        Security::StartTls => Tls::Required(tls_parameters()?),
        Security::Opportunistic => Tls::Opportunistic(tls_parameters()?),
        Security::Implicit => Tls::Wrapper(tls_parameters()?),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(target.host.clone())
        .port(target.port)
        .tls(tls)
        .timeout(Some(timeout));
    if let Some((user, password)) = &target.credentials {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    Ok(builder.build())
}

/// Where the worker delivers.
#[derive(Clone)]
pub(crate) enum Delivery {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Outbox(PathBuf),
}

/// What a successful delivery did.
pub(crate) enum Delivered {
    Smtp,
    Outbox(PathBuf),
}

impl Delivery {
    pub(crate) async fn deliver(&self, message: &Message) -> Result<Delivered, DeliveryError> {
        match self {
            Delivery::Smtp(transport) => {
                transport.send(message.clone()).await.map_err(DeliveryError::Smtp)?;
                Ok(Delivered::Smtp)
            }
            Delivery::Outbox(dir) => write_outbox(dir, message).await.map(Delivered::Outbox),
        }
    }
}

/// Writes `<dir>/<timestamp>-<uuid>.eml`: first under a temporary name, then
/// renamed, so that a reader never sees half a message.
async fn write_outbox(dir: &Path, message: &Message) -> Result<PathBuf, DeliveryError> {
    let io = |e: std::io::Error| DeliveryError::Outbox(format!("{}: {e}", dir.display()));
    let mut builder = tokio::fs::DirBuilder::new();
    builder.recursive(true);
    // The links in these files open accounts: readable by the service's user only.
    #[cfg(unix)]
    builder.mode(0o700);
    builder.create(dir).await.map_err(io)?;
    let name = format!(
        "{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.9fZ"),
        uuid::Uuid::new_v4()
    );
    let partial = dir.join(format!(".{name}.eml.partial"));
    let path = dir.join(format!("{name}.eml"));
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(&partial).await.map_err(io)?;
    tokio::io::AsyncWriteExt::write_all(&mut file, &message.formatted())
        .await
        .map_err(io)?;
    tokio::fs::rename(&partial, &path).await.map_err(io)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_smtp() {
        let target = parse_smtp_url("smtp://mail.internal:2525").unwrap();
        assert_eq!(target.host, "mail.internal");
        assert_eq!(target.port, 2525);
        assert_eq!(target.security, Security::None);
        assert_eq!(target.credentials, None);
        assert_eq!(parse_smtp_url("smtp://mail.internal").unwrap().port, 25);
    }

    #[test]
    fn starttls_with_credentials() {
        let target = parse_smtp_url("smtp://mailer:pa55@smtp.example.com?tls=starttls").unwrap();
        assert_eq!(target.security, Security::StartTls);
        assert_eq!(target.port, 587);
        assert_eq!(target.credentials, Some(("mailer".into(), "pa55".into())));
        assert_eq!(
            parse_smtp_url("smtp://h:25?tls=opportunistic").unwrap().security,
            Security::Opportunistic
        );
    }

    #[test]
    fn implicit_tls_with_percent_encoded_credentials() {
        let target = parse_smtp_url("smtps://ops%40example.com:p%3Ass%2Fw%40rd%20x@smtp.example.com:465").unwrap();
        assert_eq!(target.security, Security::Implicit);
        assert_eq!(target.port, 465);
        assert_eq!(
            target.credentials,
            Some(("ops@example.com".into(), "p:ss/w@rd x".into()))
        );
        assert_eq!(parse_smtp_url("smtps://smtp.example.com").unwrap().port, 465);
    }

    #[test]
    fn ip_hosts() {
        assert_eq!(parse_smtp_url("smtp://127.0.0.1:1025").unwrap().host, "127.0.0.1");
        assert_eq!(parse_smtp_url("smtp://[::1]:1025").unwrap().host, "::1");
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_the_password() {
        for bad in [
            "http://smtp.example.com",
            "smtp://",
            "smtp://h?tls=maybe",
            "smtps://h?tls=starttls",
            "smtp://h?timeout=3",
            "smtp://h/path",
            "not a url",
        ] {
            assert!(parse_smtp_url(bad).is_err(), "{bad}");
        }
        let error = parse_smtp_url("smtp://u:hunter2@h?tls=bogus").unwrap_err();
        assert!(!error.to_string().contains("hunter2"));
        let debug = format!("{:?}", parse_smtp_url("smtp://u:hunter2@h").unwrap());
        assert!(!debug.contains("hunter2"));
    }
}
