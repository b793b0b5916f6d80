//! Passkeys: the ceremonies' bodies and the passkey as listed.

use super::{rfc3339, rfc3339_opt};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A started ceremony: finish it with `challenge_id` within 5 minutes.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PasskeyChallengeBody {
    /// Names the challenge at `…/finish`; works once.
    pub challenge_id: String,
    /// `PublicKeyCredentialCreationOptions` (registration) or
    /// `PublicKeyCredentialRequestOptions` (sign-in) as JSON, binary fields
    /// in base64url: for `PublicKeyCredential.parse…OptionsFromJSON`.
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
}

/// `POST /v1/me/passkeys/register/finish`
#[derive(Deserialize, utoipa::ToSchema)]
pub struct PasskeyRegistrationBody {
    /// From `register/start`.
    #[schema(required = true, value_type = String)]
    pub challenge_id: Option<String>,
    /// What to call it (1–100 characters).
    #[schema(required = true, value_type = String, min_length = 1, max_length = 100)]
    pub name: Option<String>,
    /// The browser's `PublicKeyCredential`, as its `toJSON()` gives it.
    #[schema(required = true, value_type = Object)]
    pub credential: Option<serde_json::Value>,
}

/// `POST /v1/auth/passkey/finish`
#[derive(Deserialize, utoipa::ToSchema)]
pub struct PasskeyAssertionBody {
    /// From `/v1/auth/passkey/start`.
    #[schema(required = true, value_type = String)]
    pub challenge_id: Option<String>,
    /// The browser's `PublicKeyCredential` (an assertion), as its `toJSON()` gives it.
    #[schema(required = true, value_type = Object)]
    pub credential: Option<serde_json::Value>,
}

/// A passkey of the account.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PasskeyBody {
    /// Its id.
    pub id: String,
    /// What its owner called it.
    pub name: String,
    /// When it was added.
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    /// When it last signed in, or `null`.
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<DateTime<Utc>>,
    /// Whether the authenticator says it is backed up (synced to other devices).
    pub backed_up: bool,
}

/// `GET /v1/me/passkeys`
#[derive(Serialize, utoipa::ToSchema)]
pub struct PasskeyList {
    /// Oldest first.
    pub passkeys: Vec<PasskeyBody>,
}

impl From<&convosphere_domain::passkey::Passkey> for PasskeyBody {
    fn from(passkey: &convosphere_domain::passkey::Passkey) -> Self {
        Self {
            id: passkey.id.to_string(),
            name: passkey.name.clone(),
            created_at: passkey.created_at,
            last_used_at: passkey.last_used_at,
            backed_up: passkey.backed_up,
        }
    }
}
