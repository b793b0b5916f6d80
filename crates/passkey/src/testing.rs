//! A software authenticator, for tests and benchmarks: it answers the
//! service's options as a browser with a platform authenticator would
//! (W3C WebAuthn Level 3: "none" attestation, ES256 keys on P-256,
//! discoverable credentials, user verification), so that the ceremonies
//! run end to end without a browser.
//!
//! ```
//! use convosphere_passkey::testing::SoftAuthenticator;
//! use convosphere_passkey::WebauthnVerifier;
//! use convosphere_domain::ports::PasskeyVerifier;
//! # let user = convosphere_passkey::testing::example_user()?;
//! let verifier = WebauthnVerifier::new("localhost", "http://localhost:8080", "Example")?;
//! let mut authenticator = SoftAuthenticator::new("http://localhost:8080");
//!
//! let started = verifier.start_registration(&user, &[])?;
//! let answer = authenticator.register(&started.options)?;
//! let credential = verifier.finish_registration(&started.state, &answer)?;
//!
//! let started = verifier.start_sign_in()?;
//! let answer = authenticator.sign_in(&started.options)?;
//! assert_eq!(verifier.claimed(&answer)?.credential_id, credential.credential_id);
//! let verified = verifier.finish_sign_in(&started.state, &answer, &credential.credential)?;
//! assert_eq!(verified.sign_count, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::{hash, MessageDigest};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;
use serde_cbor_2::Value;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;

/// Why the authenticator did not answer (as a browser's `DOMException` would not).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("authenticator: {0}")]
pub struct AuthenticatorError(pub String);

fn fail(what: impl std::fmt::Display) -> AuthenticatorError {
    AuthenticatorError(what.to_string())
}

/// One credential the authenticator holds.
struct SoftCredential {
    id: Vec<u8>,
    rp_id: String,
    user_handle: Vec<u8>,
    key: PKey<Private>,
    counter: u32,
}

/// A platform authenticator in memory, bound to the origin its "browser" shows.
pub struct SoftAuthenticator {
    origin: String,
    credentials: Vec<SoftCredential>,
    /// Whether it verifies its user (PIN, biometrics): the UV flag.
    pub verifies_user: bool,
    /// Whether its credentials are synced (the BE and BS flags).
    pub backed_up: bool,
    /// How much the signature counter grows per assertion (0: no counter,
    /// as most synced passkeys).
    pub counter_step: u32,
}

impl SoftAuthenticator {
    /// An authenticator whose answers come from pages of `origin`.
    pub fn new(origin: &str) -> Self {
        Self {
            origin: origin.trim_end_matches('/').to_owned(),
            credentials: Vec::new(),
            verifies_user: true,
            backed_up: false,
            counter_step: 1,
        }
    }

    /// The same credentials, answering for pages of another origin (a phishing site).
    pub fn set_origin(&mut self, origin: &str) {
        origin.trim_end_matches('/').clone_into(&mut self.origin);
    }

    /// Sets the signature counter of the `index`th credential (registration order).
    pub fn set_counter(&mut self, index: usize, counter: u32) {
        if let Some(credential) = self.credentials.get_mut(index) {
            credential.counter = counter;
        }
    }

    /// How many credentials it holds.
    pub fn len(&self) -> usize {
        self.credentials.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.credentials.is_empty()
    }

    /// Answers `PublicKeyCredentialCreationOptions` (JSON) with a new
    /// credential: the `PublicKeyCredential` JSON a browser's `toJSON()` gives.
    /// Refuses, as `InvalidStateError`, when it holds an excluded credential.
    pub fn register(&mut self, options: &str) -> Result<String, AuthenticatorError> {
        let options: Json = serde_json::from_str(options).map_err(fail)?;
        let rp_id = options["rp"]["id"].as_str().ok_or_else(|| fail("no rp.id"))?.to_owned();
        let user_handle = b64(&options["user"]["id"])?;
        let challenge = options["challenge"].as_str().ok_or_else(|| fail("no challenge"))?;
        let excluded = options["excludeCredentials"].as_array().cloned().unwrap_or_default();
        for descriptor in &excluded {
            let id = b64(&descriptor["id"])?;
            if self.credentials.iter().any(|c| c.id == id && c.rp_id == rp_id) {
                return Err(fail(
                    "InvalidStateError: the authenticator holds an excluded credential",
                ));
            }
        }
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(fail)?;
        let ec = EcKey::generate(&group).map_err(fail)?;
        let public = cose_key(&ec)?;
        let mut id = vec![0u8; 32];
        openssl::rand::rand_bytes(&mut id).map_err(fail)?;
        let client_data = self.client_data("webauthn.create", challenge);
        let mut auth_data = self.authenticator_data(&rp_id, 0x40, 0)?;
        auth_data.extend_from_slice(&[0u8; 16]); // AAGUID: none
        auth_data.extend_from_slice(&u16::try_from(id.len()).map_err(fail)?.to_be_bytes());
        auth_data.extend_from_slice(&id);
        auth_data.extend_from_slice(&public);
        let attestation = Value::Map(BTreeMap::from([
            (Value::Text("fmt".into()), Value::Text("none".into())),
            (Value::Text("attStmt".into()), Value::Map(BTreeMap::new())),
            (Value::Text("authData".into()), Value::Bytes(auth_data)),
        ]));
        let attestation = serde_cbor_2::to_vec(&attestation).map_err(fail)?;
        self.credentials.push(SoftCredential {
            id: id.clone(),
            rp_id,
            user_handle,
            key: PKey::from_ec_key(ec).map_err(fail)?,
            counter: 0,
        });
        Ok(json!({
            "id": enc(&id),
            "rawId": enc(&id),
            "type": "public-key",
            "response": {
                "attestationObject": enc(&attestation),
                "clientDataJSON": enc(client_data.as_bytes()),
                "transports": ["internal"],
            },
            "clientExtensionResults": {},
        })
        .to_string())
    }

    /// Answers `PublicKeyCredentialRequestOptions` (JSON) with an assertion
    /// of its newest credential for the RP id (the one a person would pick).
    pub fn sign_in(&mut self, options: &str) -> Result<String, AuthenticatorError> {
        let newest = self
            .credentials
            .len()
            .checked_sub(1)
            .ok_or_else(|| fail("no credential"))?;
        self.sign_in_with(options, newest)
    }

    /// Answers with an assertion of the `index`th credential (registration order).
    pub fn sign_in_with(&mut self, options: &str, index: usize) -> Result<String, AuthenticatorError> {
        let options: Json = serde_json::from_str(options).map_err(fail)?;
        let rp_id = options["rpId"].as_str().ok_or_else(|| fail("no rpId"))?.to_owned();
        let challenge = options["challenge"].as_str().ok_or_else(|| fail("no challenge"))?;
        let step = self.counter_step;
        let credential = self
            .credentials
            .get_mut(index)
            .ok_or_else(|| fail("no such credential"))?;
        if credential.rp_id != rp_id {
            return Err(fail("NotAllowedError: no credential for this RP id"));
        }
        credential.counter = credential.counter.wrapping_add(step);
        let counter = credential.counter;
        let (id, user_handle) = (credential.id.clone(), credential.user_handle.clone());
        let client_data = self.client_data("webauthn.get", challenge);
        let auth_data = self.authenticator_data(&rp_id, 0, counter)?;
        let client_hash = hash(MessageDigest::sha256(), client_data.as_bytes()).map_err(fail)?;
        let key = &self.credentials[index].key;
        let mut signer = Signer::new(MessageDigest::sha256(), key).map_err(fail)?;
        signer.update(&auth_data).map_err(fail)?;
        signer.update(&client_hash).map_err(fail)?;
        let signature = signer.sign_to_vec().map_err(fail)?;
        Ok(json!({
            "id": enc(&id),
            "rawId": enc(&id),
            "type": "public-key",
            "response": {
                "authenticatorData": enc(&auth_data),
                "clientDataJSON": enc(client_data.as_bytes()),
                "signature": enc(&signature),
                "userHandle": enc(&user_handle),
            },
            "clientExtensionResults": {},
        })
        .to_string())
    }

    fn client_data(&self, kind: &str, challenge: &str) -> String {
        json!({"type": kind, "challenge": challenge, "origin": self.origin, "crossOrigin": false}).to_string()
    }

    /// `rpIdHash ‖ flags ‖ signCount`, with UP always, UV, BE and BS as set.
    fn authenticator_data(&self, rp_id: &str, extra_flags: u8, counter: u32) -> Result<Vec<u8>, AuthenticatorError> {
        let mut flags = 0x01 | extra_flags;
        if self.verifies_user {
            flags |= 0x04;
        }
        if self.backed_up {
            flags |= 0x08 | 0x10;
        }
        let mut data = hash(MessageDigest::sha256(), rp_id.as_bytes()).map_err(fail)?.to_vec();
        data.push(flags);
        data.extend_from_slice(&counter.to_be_bytes());
        Ok(data)
    }
}

/// The COSE_Key (RFC 9053) of a P-256 public key, for ES256.
fn cose_key(ec: &EcKey<Private>) -> Result<Vec<u8>, AuthenticatorError> {
    let mut ctx = BigNumContext::new().map_err(fail)?;
    let (mut x, mut y) = (
        openssl::bn::BigNum::new().map_err(fail)?,
        openssl::bn::BigNum::new().map_err(fail)?,
    );
    ec.public_key()
        .affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx)
        .map_err(fail)?;
    let coordinate = |n: &openssl::bn::BigNum| n.to_vec_padded(32).map_err(fail);
    let key = Value::Map(BTreeMap::from([
        (Value::Integer(1), Value::Integer(2)),  // kty: EC2
        (Value::Integer(3), Value::Integer(-7)), // alg: ES256
        (Value::Integer(-1), Value::Integer(1)), // crv: P-256
        (Value::Integer(-2), Value::Bytes(coordinate(&x)?)),
        (Value::Integer(-3), Value::Bytes(coordinate(&y)?)),
    ]));
    serde_cbor_2::to_vec(&key).map_err(fail)
}

fn enc(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn b64(value: &Json) -> Result<Vec<u8>, AuthenticatorError> {
    let text = value.as_str().ok_or_else(|| fail("expected base64url text"))?;
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).map_err(fail)
}

/// A user for examples: what the service passes the verifier.
pub fn example_user() -> Result<convosphere_domain::User, convosphere_domain::EmailError> {
    use convosphere_domain::{Email, Plan, User, UserId};
    Ok(User {
        id: UserId::from_uuid(uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001)),
        name: "Ada Lovelace".into(),
        email: Email::parse("ada@example.com")?,
        email_verified: true,
        password_hash: None,
        company: None,
        country: None,
        phone: None,
        plan: Plan::Free,
        mfa_enabled: false,
        suspended: false,
        failed_logins: 0,
        locked_until: None,
        created_at: chrono::DateTime::UNIX_EPOCH,
    })
}
