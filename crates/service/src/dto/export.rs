//! `GET /v1/me/export`: the account's data in one document.

use super::{rfc3339, ApiKeyBody, EventBody, IdentityBody, SessionBody, UsageBucketBody, UserBody};
use chrono::{DateTime, Utc};
use convosphere_domain::auth::export::AccountExport;
use convosphere_domain::SessionId;
use serde::Serialize;

/// Two-factor authentication as the export shows it (never the secret).
#[derive(Serialize, utoipa::ToSchema)]
pub struct TwoFactorBody {
    /// Whether a TOTP authenticator guards logins.
    pub enabled: bool,
    /// Recovery codes not yet used.
    pub recovery_codes_left: u32,
}

/// A change of address waiting for its link (never the link).
#[derive(Serialize, utoipa::ToSchema)]
pub struct PendingEmailChangeBody {
    /// The address asked for.
    pub email: String,
    /// When the link sent there stops working.
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: DateTime<Utc>,
}

/// A network a key was used from.
#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyNetworkBody {
    /// `203.0.113.0/24`, `2001:db8:7::/48`.
    pub network: String,
    /// First use from it.
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub first_seen: DateTime<Utc>,
    /// Latest use from it (noted at most hourly).
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub last_seen: DateTime<Utc>,
}

/// An API key in the export: the `ApiKey` fields, where it was used from,
/// and its days with requests.
#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyExportBody {
    /// The key as `GET /v1/api-keys/{id}` shows it.
    #[serde(flatten)]
    pub key: ApiKeyBody,
    /// The client IP of its last use.
    pub last_used_ip: Option<String>,
    /// The `User-Agent` of its last use.
    pub last_used_user_agent: Option<String>,
    /// The networks it was used from, most recent first.
    pub networks: Vec<KeyNetworkBody>,
    /// Its days with requests, oldest first.
    pub usage: Vec<UsageBucketBody>,
}

/// The buckets with requests.
fn busy(usage: &convosphere_domain::usage::Usage) -> Vec<UsageBucketBody> {
    usage
        .buckets
        .iter()
        .filter(|b| b.counts.requests() > 0)
        .map(UsageBucketBody::from)
        .collect()
}

/// Every record kept about the account, without a secret or a hash of one.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ExportBody {
    /// When the export was made.
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub exported_at: DateTime<Utc>,
    /// The profile.
    pub user: UserBody,
    /// A change of address waiting for its link, or `null`.
    pub pending_email_change: Option<PendingEmailChangeBody>,
    /// Two-factor authentication.
    pub two_factor: TwoFactorBody,
    /// The active sessions, newest first.
    pub sessions: Vec<SessionBody>,
    /// Every API key, newest first (the prefix, never the key).
    pub api_keys: Vec<KeyExportBody>,
    /// The linked provider identities.
    pub identities: Vec<IdentityBody>,
    /// The passkeys (names, dates, backup state; no public key).
    pub passkeys: Vec<super::PasskeyBody>,
    /// The audit trail, newest first.
    pub events: Vec<EventBody>,
    /// The days with requests, oldest first (UTC), as far back as they are kept.
    pub usage: Vec<UsageBucketBody>,
}

impl ExportBody {
    /// The document; `current` marks the session that asked.
    pub fn new(export: &AccountExport, idle_timeout: chrono::Duration, current: Option<SessionId>) -> Self {
        let current = current.unwrap_or(SessionId::from_uuid(uuid::Uuid::nil()));
        Self {
            exported_at: export.exported_at,
            user: UserBody::from(&export.user),
            pending_email_change: export.pending_email_change.as_ref().map(|p| PendingEmailChangeBody {
                email: p.new_email.as_str().to_owned(),
                expires_at: p.expires_at,
            }),
            two_factor: TwoFactorBody {
                enabled: export.user.mfa_enabled,
                recovery_codes_left: export.recovery_codes_left,
            },
            sessions: export
                .sessions
                .iter()
                .map(|s| SessionBody::new(s, idle_timeout, current))
                .collect(),
            api_keys: export
                .api_keys
                .iter()
                .map(|k| KeyExportBody {
                    key: ApiKeyBody::new(&k.key, export.exported_at),
                    last_used_ip: k.last_client.ip.clone(),
                    last_used_user_agent: k.last_client.user_agent.clone(),
                    networks: k
                        .networks
                        .iter()
                        .map(|n| KeyNetworkBody {
                            network: n.network.clone(),
                            first_seen: n.first_seen,
                            last_seen: n.last_seen,
                        })
                        .collect(),
                    usage: busy(&k.usage),
                })
                .collect(),
            identities: export.identities.iter().map(IdentityBody::from).collect(),
            passkeys: export.passkeys.iter().map(super::PasskeyBody::from).collect(),
            events: export.events.iter().map(EventBody::from).collect(),
            usage: busy(&export.usage),
        }
    }
}
