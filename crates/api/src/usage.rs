//! Usage of the account and of its keys.

use super::auth::UserSession;
use super::routes::Result;
use actix_web::{web, HttpResponse};
use chrono::Utc;
use convosphere_domain::usage::UsageRange;
use convosphere_service::common::problem::{ApiError, Problem};
use convosphere_service::dto::UsageBody;
use convosphere_service::state::AppState;
use serde::Deserialize;

/// The query of both usage endpoints.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// Start (RFC 3339; default: 24 hours or 30 days before `to`), widened to its bucket.
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<String>,
    /// End (RFC 3339; default: now); the bucket that holds it is included.
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<String>,
    /// `hour` (at most 31 days) or `day` (at most 400 days; the default).
    #[param(value_type = Option<String>)]
    pub granularity: Option<String>,
}

impl UsageQuery {
    fn range(&self) -> Result<UsageRange> {
        UsageRange::parse(
            self.from.as_deref(),
            self.to.as_deref(),
            self.granularity.as_deref(),
            Utc::now(),
        )
        .map_err(ApiError::validation)
    }
}

/// The account's usage: every key and session, next to the plan's limit.
#[utoipa::path(get, path = "/v1/me/usage", tag = "usage", security(("bearer" = [])), params(UsageQuery),
    responses((status = 200, body = UsageBody), (status = 401, body = Problem), (status = 422, body = Problem)))]
pub async fn account(state: web::Data<AppState>, user: UserSession, query: web::Query<UsageQuery>) -> Result {
    let usage = state.auth.account_usage(&user.0.user, query.range()?).await?;
    Ok(HttpResponse::Ok().json(UsageBody::from(&usage)))
}

/// One key's usage, with where it was last used from.
#[utoipa::path(get, path = "/v1/api-keys/{id}/usage", tag = "usage", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The key's id"), UsageQuery),
    responses((status = 200, body = UsageBody), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn key(
    state: web::Data<AppState>,
    user: UserSession,
    id: web::Path<String>,
    query: web::Query<UsageQuery>,
) -> Result {
    let found = state
        .auth
        .key_usage(&user.0.user, super::keys::key_id(&id)?, query.range()?)
        .await?;
    let mut body = UsageBody::from(&found.usage);
    body.last_used_ip = Some(found.last_client.ip);
    body.last_used_user_agent = Some(found.last_client.user_agent);
    Ok(HttpResponse::Ok().json(body))
}
