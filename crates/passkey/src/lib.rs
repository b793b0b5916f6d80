#![doc = include_str!("../README.md")]

#[cfg(feature = "testing")]
pub mod testing;

use convosphere_domain::passkey::{
    ClaimedCredential, CredentialId, NewCredential, PasskeyRefused, StartedCeremony, StoredCredential,
    VerifiedAssertion,
};
use convosphere_domain::ports::PasskeyVerifier;
use convosphere_domain::{InfraError, User};
use serde::{de::DeserializeOwned, Serialize};
use url::Url;
use webauthn_rs::prelude::{
    Credential, DiscoverableAuthentication, Passkey, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Webauthn, WebauthnBuilder,
};
use webauthn_rs_proto::{AuthenticatorSelectionCriteria, ResidentKeyRequirement, UserVerificationPolicy};

/// Why the relying party could not be set up: one line for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

/// The WebAuthn ceremonies of one relying party, with webauthn-rs.
pub struct WebauthnVerifier {
    webauthn: Webauthn,
}

impl std::fmt::Debug for WebauthnVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebauthnVerifier")
            .field("origins", &self.webauthn.get_allowed_origins())
            .finish()
    }
}

impl WebauthnVerifier {
    /// A relying party with id `rp_id` (a registrable domain: the origin's
    /// host or a suffix of it) whose pages are served from `origin`.
    ///
    /// ```
    /// use convosphere_passkey::WebauthnVerifier;
    /// let verifier = WebauthnVerifier::new("example.com", "https://auth.example.com", "Convosphere AI");
    /// assert!(verifier.is_ok());
    /// assert!(WebauthnVerifier::new("other.org", "https://auth.example.com", "Convosphere AI").is_err());
    /// ```
    pub fn new(rp_id: &str, origin: &str, rp_name: &str) -> Result<Self, ConfigError> {
        let origin = Url::parse(origin).map_err(|e| ConfigError(format!("origin {origin:?}: {e}")))?;
        let webauthn = WebauthnBuilder::new(rp_id, &origin)
            .and_then(|builder| builder.rp_name(rp_name).build())
            .map_err(|e| ConfigError(format!("relying party {rp_id:?} for {origin}: {e}")))?;
        Ok(Self { webauthn })
    }
}

fn refused(what: &str, error: impl std::fmt::Display) -> PasskeyRefused {
    PasskeyRefused(format!("{what}: {error}"))
}

fn to_json(value: &impl Serialize) -> Result<String, InfraError> {
    serde_json::to_string(value).map_err(InfraError::new)
}

fn from_json<T: DeserializeOwned>(what: &str, text: &str) -> Result<T, PasskeyRefused> {
    serde_json::from_str(text).map_err(|e| refused(what, e))
}

/// What storage keeps of a credential: webauthn-rs's own serialisation.
fn stored(passkey: &Passkey) -> Result<StoredCredential, PasskeyRefused> {
    serde_json::to_string(passkey)
        .map(StoredCredential)
        .map_err(|e| refused("credential", e))
}

impl PasskeyVerifier for WebauthnVerifier {
    fn start_registration(&self, user: &User, exclude: &[CredentialId]) -> Result<StartedCeremony, InfraError> {
        let exclude = exclude.iter().map(|id| id.0.clone()).collect();
        let (mut options, state) = self
            .webauthn
            .start_passkey_registration(user.id.as_uuid(), user.email.as_str(), &user.name, Some(exclude))
            .map_err(InfraError::new)?;
        // A passkey must be discoverable: the sign-in names no user.
        // (webauthn-rs only prefers it, for security keys with little room;
        // the state does not depend on it.)
        options.public_key.authenticator_selection = Some(AuthenticatorSelectionCriteria {
            authenticator_attachment: None,
            resident_key: Some(ResidentKeyRequirement::Required),
            require_resident_key: true,
            user_verification: UserVerificationPolicy::Required,
        });
        Ok(StartedCeremony {
            options: to_json(&options.public_key)?,
            state: to_json(&state)?,
        })
    }

    fn finish_registration(&self, state: &str, response: &str) -> Result<NewCredential, PasskeyRefused> {
        let state: PasskeyRegistration = from_json("registration state", state)?;
        let response: RegisterPublicKeyCredential = from_json("registration answer", response)?;
        let passkey = self
            .webauthn
            .finish_passkey_registration(&response, &state)
            .map_err(|e| refused("registration", e))?;
        let credential = stored(&passkey)?;
        let internals = Credential::from(passkey);
        Ok(NewCredential {
            credential_id: CredentialId(internals.cred_id.to_vec()),
            credential,
            sign_count: internals.counter,
            backed_up: internals.backup_state,
        })
    }

    fn start_sign_in(&self) -> Result<StartedCeremony, InfraError> {
        let (options, state) = self
            .webauthn
            .start_discoverable_authentication()
            .map_err(InfraError::new)?;
        // The options alone: the page decides between a button's modal
        // prompt and the autofill of conditional mediation.
        Ok(StartedCeremony {
            options: to_json(&options.public_key)?,
            state: to_json(&state)?,
        })
    }

    fn claimed(&self, response: &str) -> Result<ClaimedCredential, PasskeyRefused> {
        let response: PublicKeyCredential = from_json("sign-in answer", response)?;
        let (user, credential_id) = self
            .webauthn
            .identify_discoverable_authentication(&response)
            .map_err(|e| refused("sign-in answer", e))?;
        Ok(ClaimedCredential {
            credential_id: CredentialId(credential_id.to_vec()),
            user_handle: user.as_bytes().to_vec(),
        })
    }

    fn finish_sign_in(
        &self,
        state: &str,
        response: &str,
        credential: &StoredCredential,
    ) -> Result<VerifiedAssertion, PasskeyRefused> {
        let state: DiscoverableAuthentication = from_json("sign-in state", state)?;
        let response: PublicKeyCredential = from_json("sign-in answer", response)?;
        let mut passkey: Passkey = from_json("stored credential", &credential.0)?;
        let result = self
            .webauthn
            .finish_discoverable_authentication_v2(&response, state, &passkey)
            .map_err(|e| refused("sign-in", e))?;
        passkey.update_credential(&result);
        Ok(VerifiedAssertion {
            credential: stored(&passkey)?,
            sign_count: result.counter(),
            backed_up: result.backup_state(),
        })
    }
}
