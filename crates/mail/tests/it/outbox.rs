//! The file outbox: how a developer without SMTP gets their links.

use crate::support::*;
use convosphere_domain::ports::Mailer;
use convosphere_mail::MailService;
use std::path::PathBuf;
use std::time::Duration;

fn eml_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn each_mail_becomes_a_parseable_eml_and_its_link_is_logged() {
    let (logs, _guard) = Logs::capture();
    let data = tempfile::tempdir().unwrap();
    let outbox = data.path().join("outbox");
    let mail = MailService::start(outbox_config(&outbox)).unwrap();
    mail.send(verify_email("ada@example.com")).await.unwrap();
    assert_eq!(mail.shutdown(Duration::from_secs(5)).await, 0);

    let files = eml_files(&outbox);
    assert_eq!(files.len(), 1, "the outbox directory is created on demand");
    let name = files[0].file_name().unwrap().to_str().unwrap().to_owned();
    // <timestamp>-<uuid>.eml
    let (timestamp, rest) = name.split_once('-').unwrap();
    assert!(timestamp.starts_with("20") && timestamp.ends_with('Z'), "{name}");
    assert!(uuid::Uuid::parse_str(rest.trim_end_matches(".eml")).is_ok(), "{name}");

    let raw = std::fs::read(&files[0]).unwrap();
    let text = String::from_utf8(raw.clone()).unwrap();
    assert!(text.contains("\r\nMessage-ID: ") || text.starts_with("Message-ID: ") || text.contains("Message-ID:"));
    assert!(text.contains("Date: "), "a full RFC 5322 message");
    let parsed = parse(&raw);
    assert_eq!(parsed.subject, "Confirm your email address for Convosphere AI");
    assert!(parsed.text.contains(VERIFY_LINK));
    assert!(parsed.html.contains(VERIFY_LINK));
    // What the app's own tests do: undo quoted-printable by hand and find the link.
    let undone = text.replace("=\r\n", "").replace("=3D", "=");
    assert!(undone.contains(VERIFY_LINK));

    let logs = logs.text();
    assert!(logs.contains("mail written to outbox"), "{logs}");
    assert!(logs.contains(VERIFY_LINK), "the link is logged in outbox mode: {logs}");
    assert!(logs.contains(&name), "with the file: {logs}");
    assert_eq!(mail.stats().sent, 1);
}

#[tokio::test]
async fn the_outbox_keeps_the_order_of_sending() {
    let data = tempfile::tempdir().unwrap();
    let mail = MailService::start(outbox_config(data.path())).unwrap();
    for i in 0..20 {
        mail.send(convosphere_domain::ports::Mail::PasswordReset {
            to: email("ada@example.com"),
            name: format!("Ada {i:02}"),
            link: format!("http://auth.test/reset-password?token=t{i:02}"),
        })
        .await
        .unwrap();
    }
    assert_eq!(mail.shutdown(Duration::from_secs(5)).await, 0);
    let files = eml_files(data.path());
    assert_eq!(files.len(), 20);
    for (i, file) in files.iter().enumerate() {
        let parsed = parse(&std::fs::read(file).unwrap());
        assert!(
            parsed.text.contains(&format!("token=t{i:02}\n")),
            "file {i} out of order"
        );
    }
    // No half-written leftovers.
    assert_eq!(std::fs::read_dir(data.path()).unwrap().count(), 20);
}

#[tokio::test]
async fn an_unwritable_outbox_is_retried_then_counted_as_failed() {
    let data = tempfile::tempdir().unwrap();
    let blocker = data.path().join("outbox");
    std::fs::write(&blocker, "a file where the directory should be").unwrap();
    let mail = MailService::start(outbox_config(&blocker)).unwrap();
    mail.send(verify_email("ada@example.com")).await.unwrap();
    assert_eq!(mail.shutdown(Duration::from_secs(5)).await, 0);
    let stats = mail.stats();
    assert_eq!((stats.sent, stats.failed, stats.retried), (0, 1, 2));
}
