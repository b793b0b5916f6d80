//! Passkeys: adding, listing and removing them, and signing in (or
//! re-authenticating) with one.
//!
//! Every ceremony is two calls: a start that stores a challenge (single
//! use, [`CHALLENGE_TTL`]) and answers the browser's options, and a finish
//! that uses the challenge up, atomically: before the browser's answer is
//! verified, or (a sign-in) in the transaction that opens the session, so
//! that a sign-in commits twice in all. The ceremonies themselves are the
//! [`PasskeyVerifier`]'s; the rules are here.

use super::{Auth, IssuedTokens, Principal, RecentSignInRequired};
use crate::event::{ClientContext, EventKind};
use crate::passkey::{
    user_handle, ChallengePurpose, Passkey, PasskeyRefused, PendingChallenge, RemoveOutcome, VerifiedAssertion,
    CHALLENGE_TTL, MAX_PASSKEYS, MAX_PASSKEY_NAME_CHARS,
};
use crate::ports::{Mailer, PasskeyRepository, PasskeyVerifier, PasswordHasher, Store, TokenSigner};
use crate::{AuthMethod, FieldError, InfraError, OpaqueToken, PasskeyId, User, UserId};

/// A started ceremony, for the client: the id to finish it with and the
/// options to hand `navigator.credentials`.
#[derive(Debug)]
pub struct PasskeyChallenge {
    /// The challenge id (256 random bits; only its hash is stored).
    pub challenge_id: OpaqueToken,
    /// `PublicKeyCredentialCreationOptions` or `…RequestOptions`, as JSON.
    pub options: String,
}

/// Outcomes of adding a passkey.
#[derive(Debug, thiserror::Error)]
pub enum AddPasskeyError {
    /// The name is missing or too long, or the account has the most passkeys it may.
    #[error("invalid passkey")]
    Invalid(Vec<FieldError>),
    /// The answer did not verify, or the challenge is unknown, used,
    /// expired or another account's, or the credential is registered already.
    #[error(transparent)]
    Refused(#[from] PasskeyRefused),
    /// The session's last sign-in is too long ago: re-authenticate first.
    #[error(transparent)]
    RecentSignInRequired(#[from] RecentSignInRequired),
    /// Infrastructure failure.
    #[error(transparent)]
    Internal(#[from] InfraError),
}

/// Outcomes of removing a passkey.
#[derive(Debug, thiserror::Error)]
pub enum RemovePasskeyError {
    /// The account has no such passkey.
    #[error("no such passkey")]
    NotFound,
    /// It is the account's only way to sign in.
    #[error("the account's only way to sign in")]
    LastWayIn,
    /// The session's last sign-in is too long ago: re-authenticate first.
    #[error(transparent)]
    RecentSignInRequired(#[from] RecentSignInRequired),
    /// Infrastructure failure.
    #[error(transparent)]
    Internal(#[from] InfraError),
}

/// Outcomes of signing in or re-authenticating with a passkey.
#[derive(Debug, thiserror::Error)]
pub enum PasskeySignInError {
    /// The answer did not verify, the credential is unknown (or, for a
    /// re-authentication, another account's), or the challenge is
    /// unknown, used or expired.
    #[error(transparent)]
    Refused(#[from] PasskeyRefused),
    /// The account is suspended or locked out.
    #[error("the account is locked")]
    Locked,
    /// The account's address is not verified yet.
    #[error("the e-mail address is not verified")]
    EmailNotVerified,
    /// The session to re-authenticate ended meanwhile.
    #[error("the session has ended")]
    SessionExpired,
    /// Infrastructure failure.
    #[error(transparent)]
    Internal(#[from] InfraError),
}

/// A verified answer: whose it is, by which passkey, what it said.
struct Verified {
    user: User,
    passkey: PasskeyId,
    assertion: VerifiedAssertion,
}

fn refused(reason: &str) -> PasskeyRefused {
    PasskeyRefused(reason.to_owned())
}

impl<S, H, T, M, L> Auth<S, H, T, M, L>
where
    S: Store + PasskeyRepository,
    H: PasswordHasher,
    T: TokenSigner,
    M: Mailer,
{
    /// The passkeys of `user`, oldest first.
    pub async fn passkeys(&self, user: UserId) -> Result<Vec<Passkey>, InfraError> {
        self.store.passkeys(user).await
    }

    /// Starts adding a passkey to the principal's account (a sensitive
    /// action). The account's passkeys are excluded, so one authenticator
    /// is registered once.
    pub async fn start_passkey_registration<V: PasskeyVerifier>(
        &self,
        verifier: &V,
        principal: &Principal,
    ) -> Result<PasskeyChallenge, AddPasskeyError> {
        self.require_recent_sign_in(principal)?;
        let user = &principal.user;
        let existing = self.store.passkeys(user.id).await?;
        if existing.len() >= MAX_PASSKEYS {
            return Err(AddPasskeyError::Invalid(vec![too_many()]));
        }
        let exclude: Vec<_> = existing.into_iter().map(|p| p.credential_id).collect();
        let started = verifier.start_registration(user, &exclude)?;
        Ok(self
            .save_challenge(ChallengePurpose::Registration(user.id), started)
            .await?)
    }

    /// Finishes adding a passkey named `name` with the browser's answer
    /// (`credential`, its JSON). The name is checked before the challenge
    /// is used, so a bad name can be corrected and sent again.
    pub async fn finish_passkey_registration<V: PasskeyVerifier>(
        &self,
        verifier: &V,
        principal: &Principal,
        challenge_id: &str,
        name: &str,
        credential: &str,
        client: &ClientContext,
    ) -> Result<Passkey, AddPasskeyError> {
        self.require_recent_sign_in(principal)?;
        let mut errors = Vec::new();
        let name = crate::profile::parse_required_text("name", name, MAX_PASSKEY_NAME_CHARS, &mut errors);
        if !errors.is_empty() {
            return Err(AddPasskeyError::Invalid(errors));
        }
        let user = principal.user.id;
        let challenge = self
            .take_challenge(challenge_id)
            .await?
            .filter(|c| c.purpose == ChallengePurpose::Registration(user))
            .ok_or_else(|| refused("unknown, used or expired registration challenge"))?;
        let verified = verifier.finish_registration(&challenge.state, credential)?;
        let now = self.clock.now();
        let passkey = Passkey {
            id: PasskeyId::generate(now, &*self.rng),
            user_id: user,
            name,
            credential_id: verified.credential_id,
            credential: verified.credential,
            sign_count: verified.sign_count,
            backed_up: verified.backed_up,
            created_at: now,
            last_used_at: None,
        };
        if !self.store.add_passkey(&passkey).await? {
            return Err(refused("the credential is registered already").into());
        }
        let id = passkey.id.to_string();
        let details = [("passkey_id", id.as_str()), ("name", passkey.name.as_str())];
        self.record(user, EventKind::PasskeyAdded, client, &details).await?;
        Ok(passkey)
    }

    /// Removes a passkey of the principal's account (a sensitive action),
    /// unless it is the account's only way to sign in.
    pub async fn remove_passkey(
        &self,
        principal: &Principal,
        id: PasskeyId,
        client: &ClientContext,
    ) -> Result<(), RemovePasskeyError> {
        self.require_recent_sign_in(principal)?;
        let user = principal.user.id;
        let name = self
            .store
            .passkeys(user)
            .await?
            .into_iter()
            .find(|p| p.id == id)
            .map(|p| p.name)
            .ok_or(RemovePasskeyError::NotFound)?;
        match self.store.remove_passkey(user, id).await? {
            RemoveOutcome::NotFound => Err(RemovePasskeyError::NotFound),
            RemoveOutcome::LastWayIn => Err(RemovePasskeyError::LastWayIn),
            RemoveOutcome::Removed => {
                let id = id.to_string();
                let details = [("passkey_id", id.as_str()), ("name", name.as_str())];
                self.record(user, EventKind::PasskeyRemoved, client, &details).await?;
                Ok(())
            }
        }
    }

    /// Starts a sign-in (or a re-authentication) with a passkey: no e-mail
    /// needed, the authenticator offers the account's discoverable credential.
    pub async fn start_passkey_sign_in<V: PasskeyVerifier>(
        &self,
        verifier: &V,
    ) -> Result<PasskeyChallenge, InfraError> {
        let started = verifier.start_sign_in()?;
        self.save_challenge(ChallengePurpose::SignIn, started).await
    }

    /// Signs in with a passkey and opens a session (`amr` `hwk`). User
    /// verification is required, so no TOTP code is asked. A suspended,
    /// locked-out or unverified account is refused as for a password.
    ///
    /// The challenge is read, the answer verified, and then one transaction
    /// uses the challenge up, notes the passkey's use and opens the session
    /// (of parallel finishes with one challenge at most one gets through);
    /// a refused answer uses the challenge up on its own.
    pub async fn finish_passkey_sign_in<V: PasskeyVerifier>(
        &self,
        verifier: &V,
        challenge_id: &str,
        credential: &str,
        client: &ClientContext,
    ) -> Result<IssuedTokens, PasskeySignInError> {
        let id = OpaqueToken::presented(challenge_id).hash();
        let now = self.clock.now();
        let challenge = self
            .store
            .passkey_challenge(&id, now)
            .await?
            .filter(|c| c.purpose == ChallengePurpose::SignIn)
            .ok_or_else(|| refused("unknown, used or expired sign-in challenge"))?;
        let verified = match self.verify_assertion(verifier, &challenge, credential, client).await {
            Ok(verified) => verified,
            Err(PasskeySignInError::Internal(error)) => return Err(error.into()),
            Err(refusal) => {
                self.store.take_passkey_challenge(&id, now).await?;
                return Err(refusal);
            }
        };
        let opening = self.opening(&verified.user, vec![AuthMethod::HardwareKey], "passkey", client);
        let evicted = self
            .store
            .sign_in_with_passkey(&id, verified.passkey, &verified.assertion, &opening.new_session())
            .await?
            .ok_or_else(|| refused("the challenge was used, or the passkey used again, meanwhile"))?;
        Ok(self.opened(verified.user, opening, &evicted)?)
    }

    /// Re-authenticates the principal's session with one of its account's
    /// passkeys: a new token pair for the same session, `auth_time` now,
    /// as [`reauthenticate`](Auth::reauthenticate) does with a password.
    pub async fn passkey_reauthenticate<V: PasskeyVerifier>(
        &self,
        verifier: &V,
        principal: &Principal,
        challenge_id: &str,
        credential: &str,
        client: &ClientContext,
    ) -> Result<IssuedTokens, PasskeySignInError> {
        let challenge = self
            .take_challenge(challenge_id)
            .await?
            .filter(|c| c.purpose == ChallengePurpose::SignIn)
            .ok_or_else(|| refused("unknown, used or expired sign-in challenge"))?;
        let Verified {
            user,
            passkey,
            assertion,
        } = self.verify_assertion(verifier, &challenge, credential, client).await?;
        if user.id != principal.user.id {
            return Err(refused("a passkey of another account").into());
        }
        if !self
            .store
            .note_passkey_use(passkey, &assertion, self.clock.now())
            .await?
        {
            return Err(refused("the passkey was removed or used again meanwhile").into());
        }
        let refresh = OpaqueToken::generate(&*self.rng);
        let session = self
            .mark_reauthenticated(principal, vec![AuthMethod::HardwareKey], Some(&refresh))
            .await?
            .ok_or(PasskeySignInError::SessionExpired)?;
        self.record(user.id, EventKind::Reauthenticated, client, &[("method", "passkey")])
            .await?;
        Ok(self.issue(user, &session, refresh, self.clock.now())?)
    }

    /// Finds the passkey the answer to `challenge` claims, verifies the
    /// answer and checks the passkey's account. Writes nothing but the
    /// `login_failed` event of a refusal.
    async fn verify_assertion<V: PasskeyVerifier>(
        &self,
        verifier: &V,
        challenge: &PendingChallenge,
        credential: &str,
        client: &ClientContext,
    ) -> Result<Verified, PasskeySignInError> {
        let claimed = verifier.claimed(credential)?;
        let passkey = self
            .store
            .passkey_by_credential(&claimed.credential_id)
            .await?
            .filter(|p| claimed.user_handle == user_handle(p.user_id))
            .ok_or_else(|| refused("unknown credential"))?;
        let user = self
            .store
            .user_by_id(passkey.user_id)
            .await?
            .ok_or_else(|| refused("unknown credential"))?;
        let assertion = match verifier.finish_sign_in(&challenge.state, credential, &passkey.credential) {
            Ok(assertion) => assertion,
            Err(refusal) => {
                self.record(user.id, EventKind::LoginFailed, client, &[("reason", "passkey_failed")])
                    .await?;
                return Err(refusal.into());
            }
        };
        let now = self.clock.now();
        let refusal = if user.suspended {
            Some(("suspended", PasskeySignInError::Locked))
        } else if user.is_locked_out(now) {
            Some(("locked_out", PasskeySignInError::Locked))
        } else if !user.email_verified {
            Some(("email_not_verified", PasskeySignInError::EmailNotVerified))
        } else {
            None
        };
        if let Some((reason, error)) = refusal {
            self.record(user.id, EventKind::LoginFailed, client, &[("reason", reason)])
                .await?;
            return Err(error);
        }
        Ok(Verified {
            user,
            passkey: passkey.id,
            assertion,
        })
    }

    async fn save_challenge(
        &self,
        purpose: ChallengePurpose,
        started: crate::passkey::StartedCeremony,
    ) -> Result<PasskeyChallenge, InfraError> {
        let challenge_id = OpaqueToken::generate(&*self.rng);
        let pending = PendingChallenge {
            id: challenge_id.hash(),
            purpose,
            state: started.state,
            expires_at: self.clock.now() + CHALLENGE_TTL,
        };
        self.store.save_passkey_challenge(&pending).await?;
        Ok(PasskeyChallenge {
            challenge_id,
            options: started.options,
        })
    }

    async fn take_challenge(&self, challenge_id: &str) -> Result<Option<PendingChallenge>, InfraError> {
        let id = OpaqueToken::presented(challenge_id).hash();
        self.store.take_passkey_challenge(&id, self.clock.now()).await
    }
}

fn too_many() -> FieldError {
    FieldError::new(
        "passkeys",
        "too_many",
        format!("an account may have at most {MAX_PASSKEYS} passkeys: remove one first"),
    )
}
