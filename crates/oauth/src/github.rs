//! GitHub (and GitHub Enterprise): the OAuth 2 code flow with PKCE, then
//! `/user` for the id and name and `/user/emails` for the primary address.

use crate::code_flow::CodeFlow;
use crate::http::{clean, refused, under, unreachable};
use crate::GitHubConfig;
use convosphere_domain::oauth::{AuthorizationRequest, CodeGrant, Provider, ProviderError, ProviderIdentity};
use serde::Deserialize;

const PROVIDER: Provider = Provider::GitHub;
/// The id and name (`read:user`) and the addresses with their verification (`user:email`).
const SCOPES: &str = "read:user user:email";

/// The GitHub adapter.
#[derive(Debug)]
pub struct GitHub {
    flow: CodeFlow,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct GitHubUser {
    id: u64,
    login: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct GitHubEmail {
    email: String,
    primary: bool,
    verified: bool,
}

impl GitHub {
    pub(crate) fn new(config: GitHubConfig, http: reqwest::Client) -> Result<Self, crate::ConfigError> {
        let flow = CodeFlow::new(
            PROVIDER,
            config.credentials,
            &config.auth_url,
            &config.token_url,
            &config.api_url,
        )?;
        Ok(Self { flow, http })
    }

    pub(crate) fn authorization_url(&self, request: &AuthorizationRequest<'_>) -> String {
        self.flow
            .authorization_url(request, SCOPES, &[("allow_signup", "true")])
    }

    pub(crate) async fn identify(&self, grant: &CodeGrant<'_>) -> Result<ProviderIdentity, ProviderError> {
        let token = self.redeem(grant).await?;
        let user: GitHubUser = self.api(&token, "user").await?;
        let emails: Vec<GitHubEmail> = self.api(&token, "user/emails").await?;
        // Only the primary address counts, and only if GitHub verified it.
        let primary = emails.into_iter().find(|e| e.primary);
        Ok(ProviderIdentity {
            subject: user.id.to_string(),
            email_verified: primary.as_ref().is_some_and(|e| e.verified),
            email: primary.map(|e| e.email),
            name: user.name.filter(|n| !n.trim().is_empty()).or(user.login),
        })
    }

    async fn redeem(&self, grant: &CodeGrant<'_>) -> Result<String, ProviderError> {
        let what = "token endpoint";
        let response = self
            .http
            .post(self.flow.token_url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&self.flow.token_form(grant))
            .send()
            .await
            .map_err(|e| unreachable(PROVIDER, what, &e))?;
        if !response.status().is_success() {
            return Err(refused(PROVIDER, what, response.status()));
        }
        // GitHub answers refusals with 200 and an `error` field.
        let answer: TokenAnswer = response.json().await.map_err(|e| unreachable(PROVIDER, what, &e))?;
        match (answer.access_token, answer.error) {
            (Some(token), None) if !token.is_empty() => Ok(token),
            (_, error) => Err(ProviderError::new(format!(
                "github refused the code: {} {}",
                clean(error.as_deref().unwrap_or("no access token")),
                clean(answer.error_description.as_deref().unwrap_or_default())
            ))),
        }
    }

    async fn api<T: serde::de::DeserializeOwned>(&self, token: &str, path: &str) -> Result<T, ProviderError> {
        let what = format!("/{path}");
        let response = self
            .http
            .get(under(&self.flow.api_url, path))
            .bearer_auth(token)
            .header(reqwest::header::ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .send()
            .await
            .map_err(|e| unreachable(PROVIDER, &what, &e))?;
        if !response.status().is_success() {
            return Err(refused(PROVIDER, &what, response.status()));
        }
        response.json().await.map_err(|e| unreachable(PROVIDER, &what, &e))
    }
}
