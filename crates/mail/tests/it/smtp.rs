//! Delivery to a real SMTP server, every kind of mail.

use crate::server::SmtpServer;
use crate::support::*;
use convosphere_domain::ports::Mailer;
use convosphere_mail::MailService;

#[tokio::test]
async fn every_kind_arrives_with_both_parts_the_right_subject_and_the_exact_link() {
    let server = SmtpServer::start();
    let mail = MailService::start(smtp_config(format!("smtp://127.0.0.1:{}", server.port))).unwrap();
    mail.send(verify_email("ada@example.com")).await.unwrap();
    mail.send(password_reset("ada@example.com")).await.unwrap();
    mail.send(signup_attempt("ada@example.com")).await.unwrap();
    mail.send(password_changed("ada@example.com")).await.unwrap();
    let received = server.wait_for(4).await;

    let mut subjects = Vec::new();
    for message in &received {
        assert_eq!(message.envelope_from, "no-reply@localhost");
        assert_eq!(message.envelope_to, vec!["ada@example.com".to_owned()]);
        let parsed = parse(&message.data);
        assert_eq!(parsed.content_type, "multipart/alternative");
        assert_eq!(
            parsed.from,
            (Some("Convosphere AI".into()), "no-reply@localhost".into())
        );
        assert_eq!(parsed.to, (Some("Ada Lovelace".into()), "ada@example.com".into()));
        assert!(parsed.message_id.ends_with("@localhost"), "{}", parsed.message_id);
        assert!(parsed.text.contains("Convosphere AI"));
        let links: &[&str] = if parsed.subject.starts_with("Confirm your email") {
            assert!(parsed.text.contains("works for 24 hours"));
            &[VERIFY_LINK]
        } else if parsed.subject.starts_with("Reset your") {
            assert!(parsed.text.contains("works for 1 hour"));
            &[RESET_LINK]
        } else if parsed.subject.starts_with("Someone tried to sign up") {
            &[LOGIN_LINK, FORGOT_LINK]
        } else if parsed.subject.ends_with("password was changed") {
            &[FORGOT_LINK]
        } else {
            panic!("unexpected subject {}", parsed.subject)
        };
        for link in links {
            assert!(
                parsed.text.contains(&format!("\n{link}\n")),
                "{link} as copyable text in\n{}",
                parsed.text
            );
            assert!(
                parsed.html.contains(&format!("href=\"{link}\"")),
                "{link} as a link in\n{}",
                parsed.html
            );
            assert!(
                parsed.html.contains(&format!(">{link}</a>")),
                "{link} shown in the HTML"
            );
        }
        subjects.push(parsed.subject);
    }
    subjects.sort();
    assert_eq!(
        subjects,
        [
            "Confirm your email address for Convosphere AI",
            "Reset your Convosphere AI password",
            "Someone tried to sign up to Convosphere AI with your email address",
            "Your Convosphere AI password was changed",
        ]
    );
    assert_eq!(mail.shutdown(std::time::Duration::from_secs(5)).await, 0);
    let stats = mail.stats();
    assert_eq!((stats.sent, stats.failed, stats.pending), (4, 0, 0));
}

#[tokio::test]
async fn the_sender_is_configurable_and_names_are_encoded_safely() {
    let server = SmtpServer::start();
    let mut config = smtp_config(format!("smtp://127.0.0.1:{}", server.port));
    config.from = "Convosphere Support <support@convosphere.test>".into();
    let mail = MailService::start(config).unwrap();
    mail.send(convosphere_domain::ports::Mail::VerifyEmail {
        to: email("zoe@example.org"),
        name: "Zoë <ceo>\r\nBcc: victim@example.net".into(),
        link: VERIFY_LINK.into(),
    })
    .await
    .unwrap();
    let received = server.wait_for(1).await;
    assert_eq!(
        received[0].envelope_to,
        vec!["zoe@example.org".to_owned()],
        "no header injection"
    );
    let parsed = parse(&received[0].data);
    assert_eq!(
        parsed.from,
        (Some("Convosphere Support".into()), "support@convosphere.test".into())
    );
    assert_eq!(parsed.to.1, "zoe@example.org");
    assert!(parsed.html.contains("Hello Zoë &lt;ceo&gt;"), "{}", parsed.html);
    assert!(parsed.message_id.ends_with("@convosphere.test"));
}

#[tokio::test]
async fn links_are_never_logged_in_smtp_mode() {
    let (logs, _guard) = Logs::capture();
    let server = SmtpServer::start();
    let mail = MailService::start(smtp_config(format!("smtp://127.0.0.1:{}", server.port))).unwrap();
    mail.send(verify_email("ada@example.com")).await.unwrap();
    mail.send(password_reset("ada@example.com")).await.unwrap();
    server.wait_for(2).await;
    mail.shutdown(std::time::Duration::from_secs(5)).await;
    let logs = logs.text();
    assert!(logs.contains("mail sent"), "{logs}");
    assert!(logs.contains("example.com"), "the recipient's domain is logged: {logs}");
    assert!(!logs.contains("token="), "{logs}");
    assert!(!logs.contains("ada@"), "not the full address: {logs}");
}
