//! Passkeys: WebAuthn credentials that sign a person in without a password.
//!
//! The domain keeps what the rules need (whose passkey, its name, when it
//! was used, whether it is backed up, its signature counter) and treats the
//! public key as an opaque [`StoredCredential`] that only the
//! [`PasskeyVerifier`](crate::ports::PasskeyVerifier) reads. The ceremonies'
//! challenges are kept server-side, by the hash of their id, and work once
//! within [`CHALLENGE_TTL`].

use crate::{PasskeyId, TokenHash, UserId};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use std::fmt;

/// How long a started registration or sign-in may take to be finished.
pub const CHALLENGE_TTL: Duration = Duration::minutes(5);
/// The most characters a passkey's name may have.
pub const MAX_PASSKEY_NAME_CHARS: usize = 100;
/// The most passkeys one account may have.
pub const MAX_PASSKEYS: usize = 20;

/// The id an authenticator gave a credential (the `rawId` of the browser's
/// answers): how a sign-in finds its passkey.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CredentialId(pub Vec<u8>);

impl CredentialId {
    /// Base64url without padding, as WebAuthn's JSON writes it and storage keeps it.
    ///
    /// ```
    /// use convosphere_domain::passkey::CredentialId;
    /// let id = CredentialId(vec![0xfb, 0xff]);
    /// assert_eq!(id.to_base64url(), "-_8");
    /// assert_eq!(CredentialId::from_base64url("-_8"), Some(id));
    /// ```
    pub fn to_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.0)
    }

    /// Reads [`to_base64url`](Self::to_base64url)'s text back.
    pub fn from_base64url(text: &str) -> Option<Self> {
        URL_SAFE_NO_PAD.decode(text).ok().map(Self)
    }
}

impl fmt::Debug for CredentialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CredentialId({})", self.to_base64url())
    }
}

/// A credential's public key, algorithm, counter and flags, as the
/// [`PasskeyVerifier`](crate::ports::PasskeyVerifier) serialises them:
/// public data, stored as it is and read only by the verifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCredential(pub String);

/// One passkey of an account.
#[derive(Debug, Clone)]
pub struct Passkey {
    /// Its id in this service.
    pub id: PasskeyId,
    /// The account it signs in to.
    pub user_id: UserId,
    /// What its owner called it ("Laptop", "Phone").
    pub name: String,
    /// The authenticator's id of the credential.
    pub credential_id: CredentialId,
    /// The public key and what the verifier checks with it.
    pub credential: StoredCredential,
    /// The last signature counter seen (0 for authenticators without one).
    pub sign_count: u32,
    /// Whether the authenticator says the credential is backed up (synced).
    pub backed_up: bool,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it last signed in or re-authenticated.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// What a started ceremony is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengePurpose {
    /// Adding a passkey to this account.
    Registration(UserId),
    /// Signing in (or re-authenticating) with any passkey.
    SignIn,
}

/// A ceremony in flight, as stored: found by the hash of its id.
#[derive(Debug, Clone)]
pub struct PendingChallenge {
    /// The SHA-256 of the challenge id handed to the client.
    pub id: TokenHash,
    /// What it may finish.
    pub purpose: ChallengePurpose,
    /// The verifier's state of the ceremony (the challenge bytes and the
    /// policy asked for), serialised by the verifier.
    pub state: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// A ceremony the verifier started: the options for the browser and the
/// state to keep until it is finished.
#[derive(Debug, Clone)]
pub struct StartedCeremony {
    /// `PublicKeyCredentialCreationOptions` or `…RequestOptions`, as JSON.
    pub options: String,
    /// What the verifier needs to finish it.
    pub state: String,
}

/// A credential the verifier accepted at registration.
#[derive(Debug, Clone)]
pub struct NewCredential {
    /// The authenticator's id of it.
    pub credential_id: CredentialId,
    /// Its public key and flags.
    pub credential: StoredCredential,
    /// The counter it started at.
    pub sign_count: u32,
    /// Whether it is backed up.
    pub backed_up: bool,
}

/// Whom an assertion claims to be, read before it is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedCredential {
    /// The credential that signed.
    pub credential_id: CredentialId,
    /// The user handle the authenticator stored at registration.
    pub user_handle: Vec<u8>,
}

/// An assertion the verifier accepted.
#[derive(Debug, Clone)]
pub struct VerifiedAssertion {
    /// The credential with its counter and flags brought up to date.
    pub credential: StoredCredential,
    /// The counter of this assertion.
    pub sign_count: u32,
    /// Whether the credential is backed up now.
    pub backed_up: bool,
}

/// Why a ceremony's answer was refused: for logs and tests, never shown
/// beyond `passkey_failed`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("passkey refused: {0}")]
pub struct PasskeyRefused(pub String);

/// What became of an attempt to remove a passkey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveOutcome {
    /// It is gone.
    Removed,
    /// The account has no such passkey.
    NotFound,
    /// Refused: the account has no password, no provider and no other
    /// passkey, so it would have no way to sign in.
    LastWayIn,
}

/// The user handle a passkey of `user` carries: the account id's 16 bytes.
pub fn user_handle(user: UserId) -> [u8; 16] {
    *user.as_uuid().as_bytes()
}
