//! The bodies of API keys and of the gateway check.

use super::{rfc3339, rfc3339_opt, scope_names};
use chrono::{DateTime, Utc};
use convosphere_domain::ScopeSet;
use serde::{Deserialize, Serialize};

/// An API key as shown to its owner; `key` only when just created or rotated.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ApiKeyBody {
    /// The key's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The first 11 characters of the key (`cs_` + public id).
    pub prefix: String,
    /// What it may do.
    pub scopes: Vec<String>,
    /// `active`, `revoked` or `expired`.
    pub status: &'static str,
    /// Creation time.
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    /// When it stops working, or `null`.
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<DateTime<Utc>>,
    /// Last use (written within 5 seconds of a use), or `null`.
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked or rotated away, or `null`.
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<DateTime<Utc>>,
    /// The whole key: only in the answer that made it. Store it now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl ApiKeyBody {
    /// A key as listed (without the secret).
    pub fn new(key: &convosphere_domain::api_key::ApiKey, now: DateTime<Utc>) -> Self {
        Self {
            id: key.id.to_string(),
            name: key.name.clone(),
            prefix: key.prefix(),
            scopes: key.scopes.to_strings(),
            status: key.status(now).as_str(),
            created_at: key.created_at,
            expires_at: key.expires_at,
            last_used_at: key.last_used_at,
            revoked_at: key.revoked_at,
            key: None,
        }
    }
}

/// `GET /v1/api-keys`
#[derive(Serialize, utoipa::ToSchema)]
pub struct ApiKeyList {
    /// Every key, newest first.
    pub api_keys: Vec<ApiKeyBody>,
}

/// One of the ten scopes (for the OpenAPI document; the domain's `Scope` parses them).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub enum ScopeName {
    /// Read agents.
    #[schema(rename = "agents:read")]
    AgentsRead,
    /// Change agents.
    #[schema(rename = "agents:write")]
    AgentsWrite,
    /// Read chats.
    #[schema(rename = "chat:read")]
    ChatRead,
    /// Chat.
    #[schema(rename = "chat:write")]
    ChatWrite,
    /// Read knowledge bases.
    #[schema(rename = "knowledge:read")]
    KnowledgeRead,
    /// Change knowledge bases.
    #[schema(rename = "knowledge:write")]
    KnowledgeWrite,
    /// Read integrations.
    #[schema(rename = "integrations:read")]
    IntegrationsRead,
    /// Change integrations.
    #[schema(rename = "integrations:write")]
    IntegrationsWrite,
    /// Read webhooks.
    #[schema(rename = "webhooks:read")]
    WebhooksRead,
    /// Change webhooks.
    #[schema(rename = "webhooks:write")]
    WebhooksWrite,
}

/// `POST /v1/api-keys`
#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateApiKeyBody {
    /// 1–100 characters.
    #[schema(required = true, value_type = String, min_length = 1, max_length = 100)]
    pub name: Option<String>,
    /// A non-empty subset of the ten scopes.
    #[schema(required = true, value_type = Vec<ScopeName>, min_items = 1)]
    pub scopes: Option<Vec<String>>,
    /// RFC 3339, in the future; absent or `null` for no expiry.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<String>,
}

/// `POST /v1/api-keys/{id}/rotate`
#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct RotateApiKeyBody {
    /// RFC 3339, in the future; absent or `null` for no expiry.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<String>,
}

/// `GET /v1/authz`
#[derive(Serialize, utoipa::ToSchema)]
pub struct AuthzBody {
    /// The account.
    pub user_id: String,
    /// `user` or `api_key`.
    pub principal: &'static str,
    /// The scopes the credential holds.
    #[serde(serialize_with = "scope_names")]
    #[schema(value_type = Vec<String>)]
    pub scopes: ScopeSet,
    /// The account's plan.
    pub plan: &'static str,
}
