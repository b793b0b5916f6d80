//! The ports of passkeys: the WebAuthn ceremonies, and the storage of
//! passkeys and of the ceremonies in flight.

use crate::passkey::{
    ClaimedCredential, CredentialId, NewCredential, Passkey, PasskeyRefused, PendingChallenge, RemoveOutcome,
    StartedCeremony, StoredCredential, VerifiedAssertion,
};
use crate::{InfraError, PasskeyId, SessionId, TokenHash, User, UserId};
use chrono::{DateTime, Utc};
use std::future::Future;

/// The WebAuthn ceremonies (W3C WebAuthn Level 3), for one relying party:
/// its id and origin are the adapter's configuration. Every answer of a
/// browser is passed as the JSON text it sent; options come back as JSON.
/// Resident keys and user verification are always required.
pub trait PasskeyVerifier: Send + Sync {
    /// Starts adding a passkey to `user`; `exclude` are the credentials
    /// the account has already, which the authenticator must not make again.
    fn start_registration(&self, user: &User, exclude: &[CredentialId]) -> Result<StartedCeremony, InfraError>;

    /// Checks the browser's answer to a registration (`state` from its
    /// start): origin, RP id, challenge, user verification, the attestation's
    /// signature and public key.
    fn finish_registration(&self, state: &str, response: &str) -> Result<NewCredential, PasskeyRefused>;

    /// Starts a sign-in with a discoverable credential: no user named.
    fn start_sign_in(&self) -> Result<StartedCeremony, InfraError>;

    /// Reads which credential and user handle an assertion claims, before
    /// anything in it is verified (to find the stored passkey).
    fn claimed(&self, response: &str) -> Result<ClaimedCredential, PasskeyRefused>;

    /// Verifies an assertion against the stored credential: origin, RP id,
    /// challenge, user verification, signature, the counter (a counter
    /// that does not grow is refused) and the backup flags.
    fn finish_sign_in(
        &self,
        state: &str,
        response: &str,
        credential: &StoredCredential,
    ) -> Result<VerifiedAssertion, PasskeyRefused>;
}

/// Stores passkeys and the ceremonies in flight.
pub trait PasskeyRepository: Send + Sync {
    /// Stores a started ceremony.
    fn save_passkey_challenge(
        &self,
        challenge: &PendingChallenge,
    ) -> impl Future<Output = Result<(), InfraError>> + Send;

    /// The ceremony with this id hash if it has not expired at `now`, left
    /// in place (a sign-in uses it up with [`sign_in_with_passkey`](Self::sign_in_with_passkey)).
    fn passkey_challenge(
        &self,
        id: &TokenHash,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<PendingChallenge>, InfraError>> + Send;

    /// Removes and returns the ceremony with this id hash if it has not
    /// expired at `now`. Of parallel calls with one id, at most one gets it.
    fn take_passkey_challenge(
        &self,
        id: &TokenHash,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<PendingChallenge>, InfraError>> + Send;

    /// Adds a passkey; `false` (and nothing stored) when its credential is
    /// registered already, to this account or another.
    fn add_passkey(&self, passkey: &Passkey) -> impl Future<Output = Result<bool, InfraError>> + Send;

    /// The passkeys of `user`, oldest first.
    fn passkeys(&self, user: UserId) -> impl Future<Output = Result<Vec<Passkey>, InfraError>> + Send;

    /// The passkey of a credential.
    fn passkey_by_credential(
        &self,
        credential: &CredentialId,
    ) -> impl Future<Output = Result<Option<Passkey>, InfraError>> + Send;

    /// Notes a verified use at `at`. The counter and credential are written
    /// only if `assertion`'s counter is above the stored one (or both are 0),
    /// so that parallel sign-ins never move the counter back: `false` when
    /// the passkey is gone or a later counter was stored meanwhile.
    fn note_passkey_use(
        &self,
        id: PasskeyId,
        assertion: &VerifiedAssertion,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, InfraError>> + Send;

    /// Completes a passkey sign-in in one transaction: uses up the sign-in
    /// challenge `challenge` (it must not have expired at the session's
    /// start), notes the verified use of passkey `id` as
    /// [`note_passkey_use`](Self::note_passkey_use) does, and opens the
    /// session as [`SessionRepository::create_session`](super::SessionRepository::create_session)
    /// does, returning the ids of the sessions it ended. `None`, and no
    /// session, when the challenge is gone (used by a parallel finish, or
    /// expired) or the counter check fails; the challenge is used up then
    /// too, unless it was gone already.
    fn sign_in_with_passkey(
        &self,
        challenge: &TokenHash,
        id: PasskeyId,
        assertion: &VerifiedAssertion,
        new: &super::NewSession<'_>,
    ) -> impl Future<Output = Result<Option<Vec<SessionId>>, InfraError>> + Send;

    /// Removes a passkey of `user`, in one transaction under the account's
    /// lock: refused when the account has no password, no provider identity
    /// and no other passkey.
    fn remove_passkey(
        &self,
        user: UserId,
        id: PasskeyId,
    ) -> impl Future<Output = Result<RemoveOutcome, InfraError>> + Send;
}
