//! STARTTLS with a login, against a server whose certificate a test CA signed.

use crate::server::{Secured, SmtpServer};
use crate::support::*;
use convosphere_domain::ports::Mailer;
use convosphere_mail::{MailConfig, MailService};
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509NameBuilder, X509};
use std::path::Path;
use std::time::Duration;

fn key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn certificate(subject: &str, key: &PKey<Private>, issuer: Option<(&X509, &PKey<Private>)>) -> X509 {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", subject).unwrap();
    let name = name.build();
    let mut builder = X509::builder().unwrap();
    builder.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    builder.set_serial_number(&serial.to_asn1_integer().unwrap()).unwrap();
    builder.set_subject_name(&name).unwrap();
    builder.set_pubkey(key).unwrap();
    builder.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
    builder.set_not_after(&Asn1Time::days_from_now(2).unwrap()).unwrap();
    match issuer {
        None => {
            builder.set_issuer_name(&name).unwrap();
            builder
                .append_extension(BasicConstraints::new().critical().ca().build().unwrap())
                .unwrap();
            builder
                .append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build().unwrap())
                .unwrap();
            builder.sign(key, MessageDigest::sha256()).unwrap();
        }
        Some((ca, ca_key)) => {
            builder.set_issuer_name(ca.subject_name()).unwrap();
            let san = SubjectAlternativeName::new()
                .ip("127.0.0.1")
                .dns("localhost")
                .build(&builder.x509v3_context(Some(ca), None))
                .unwrap();
            builder.append_extension(san).unwrap();
            builder.sign(ca_key, MessageDigest::sha256()).unwrap();
        }
    }
    builder.build()
}

/// A CA, and a server certificate for 127.0.0.1 it signed, written to `dir`.
/// Returns the CA certificate (PEM) for the client to trust.
fn make_certificates(dir: &Path) -> Vec<u8> {
    let ca_key = key();
    let ca = certificate("Convosphere test CA", &ca_key, None);
    let server_key = key();
    let server = certificate("127.0.0.1", &server_key, Some((&ca, &ca_key)));
    std::fs::write(dir.join("server.pem"), server.to_pem().unwrap()).unwrap();
    std::fs::write(dir.join("server.key"), server_key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    ca.to_pem().unwrap()
}

#[tokio::test]
async fn starttls_with_percent_encoded_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certificates(dir.path());
    let server = SmtpServer::start_secured(Secured {
        cert: &dir.path().join("server.pem"),
        key: &dir.path().join("server.key"),
        user: "mailer@convosphere.test",
        password: "p@ss:w/rd %",
    });
    let url = format!(
        "smtp://mailer%40convosphere.test:p%40ss%3Aw%2Frd%20%25@127.0.0.1:{}?tls=starttls",
        server.port
    );
    let mail = MailService::start(MailConfig {
        tls_root_certificates: vec![ca],
        ..smtp_config(url)
    })
    .unwrap();
    mail.send(verify_email("ada@example.com")).await.unwrap();
    let received = server.wait_for(1).await;
    assert_eq!(
        received[0].authenticated_as,
        Some(("mailer@convosphere.test".to_owned(), "p@ss:w/rd %".to_owned()))
    );
    assert!(parse(&received[0].data).text.contains(VERIFY_LINK));
}

#[tokio::test]
async fn starttls_refuses_a_certificate_nobody_trusts() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let server = SmtpServer::start_secured(Secured {
        cert: &dir.path().join("server.pem"),
        key: &dir.path().join("server.key"),
        user: "u",
        password: "p",
    });
    let mail = MailService::start(smtp_config(format!(
        "smtp://u:p@127.0.0.1:{}?tls=starttls",
        server.port
    )))
    .unwrap();
    mail.send(verify_email("ada@example.com")).await.unwrap();
    assert_eq!(mail.shutdown(Duration::from_secs(10)).await, 0);
    assert_eq!(mail.stats().failed, 1);
    assert!(server.received().is_empty());
}
