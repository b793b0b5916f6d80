//! The provider identities linked to an account.

use super::{rfc3339, rfc3339_opt};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// A provider identity linked to the account.
#[derive(Serialize, utoipa::ToSchema)]
pub struct IdentityBody {
    /// `google`, `github` or `facebook`.
    pub provider: &'static str,
    /// The verified address it came with when it was linked.
    pub email: String,
    /// When it was linked.
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub linked_at: DateTime<Utc>,
    /// When a login last used it, or `null`.
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<DateTime<Utc>>,
}

/// `GET /v1/me/identities`
#[derive(Serialize, utoipa::ToSchema)]
pub struct IdentityList {
    /// Oldest first.
    pub identities: Vec<IdentityBody>,
}

impl From<&convosphere_domain::oauth::IdentityRecord> for IdentityBody {
    fn from(identity: &convosphere_domain::oauth::IdentityRecord) -> Self {
        Self {
            provider: identity.provider.as_str(),
            email: identity.email.as_str().to_owned(),
            linked_at: identity.linked_at,
            last_used_at: identity.last_used_at,
        }
    }
}
