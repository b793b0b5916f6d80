//! Configuration mistakes show at start, naming what is wrong.

use crate::support::*;
use convosphere_mail::{MailConfig, MailError, MailService, Transport};

#[tokio::test]
async fn a_bad_sender_is_refused() {
    let config = MailConfig {
        from: "not an address".into(),
        ..MailConfig::default()
    };
    assert!(matches!(MailService::start(config), Err(MailError::InvalidFrom(_))));
}

#[tokio::test]
async fn a_bad_smtp_url_is_refused_without_showing_its_password() {
    for url in [
        "http://mail.example.com",
        "smtp://u:hunter2@mail.example.com?tls=sometimes",
        "smtp://",
    ] {
        let error = MailService::start(smtp_config(url.into())).unwrap_err();
        assert!(matches!(error, MailError::InvalidSmtpUrl(_)), "{url}: {error}");
        assert!(!error.to_string().contains("hunter2"));
    }
}

#[tokio::test]
async fn every_documented_url_form_is_accepted() {
    for url in [
        "smtp://localhost:1025",
        "smtp://user:pass@smtp.example.com:587?tls=starttls",
        "smtps://user:p%40ss@smtp.example.com:465",
        "smtp://smtp.example.com?tls=opportunistic",
    ] {
        MailService::start(smtp_config(url.into())).unwrap();
    }
}

#[test]
fn the_default_is_the_outbox_and_the_contract_sender() {
    let config = MailConfig::default();
    assert_eq!(config.from, "Convosphere AI <no-reply@localhost>");
    assert!(matches!(config.transport, Transport::Outbox(_)));
    assert_eq!(config.email_verify_ttl.as_secs(), 24 * 3600);
    assert_eq!(config.password_reset_ttl.as_secs(), 3600);
}

#[test]
fn the_debug_form_hides_the_smtp_password() {
    let transport = Transport::Smtp("smtps://mailer:hunter2@smtp.example.com".into());
    let shown = format!("{transport:?}");
    assert!(
        !shown.contains("hunter2") && shown.contains("smtp.example.com"),
        "{shown}"
    );
}

#[test]
fn starting_outside_a_runtime_is_an_error_not_a_panic() {
    assert!(matches!(
        MailService::start(MailConfig::default()),
        Err(MailError::NoRuntime)
    ));
}
