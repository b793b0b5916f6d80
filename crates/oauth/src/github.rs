//! GitHub (and GitHub Enterprise): the OAuth 2 code flow with PKCE, then
//! `/user` for the id and name and `/user/emails` for the primary address.

use crate::http::{clean, endpoint, refused, under, unreachable};
use crate::{Credentials, GitHubConfig};
use convosphere_domain::oauth::{AuthorizationRequest, CodeGrant, Provider, ProviderError, ProviderIdentity};
use reqwest::Url;
use secrecy::ExposeSecret;
use serde::Deserialize;

const PROVIDER: Provider = Provider::GitHub;
/// The id and name (`read:user`) and the addresses with their verification (`user:email`).
const SCOPES: &str = "read:user user:email";

/// The GitHub adapter.
#[derive(Debug)]
pub struct GitHub {
    credentials: Credentials,
    auth_url: Url,
    token_url: Url,
    api_url: Url,
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
        Ok(Self {
            auth_url: endpoint(PROVIDER, "auth_url", &config.auth_url)?,
            token_url: endpoint(PROVIDER, "token_url", &config.token_url)?,
            api_url: endpoint(PROVIDER, "api_url", &config.api_url)?,
            credentials: config.credentials,
            http,
        })
    }

    pub(crate) fn authorization_url(&self, request: &AuthorizationRequest<'_>) -> String {
        let mut url = self.auth_url.clone();
        url.query_pairs_mut()
            .append_pair("client_id", &self.credentials.client_id)
            .append_pair("redirect_uri", request.redirect_uri)
            .append_pair("scope", SCOPES)
            .append_pair("state", request.state.expose())
            .append_pair("code_challenge", &crate::http::s256(request.pkce_verifier.expose()))
            .append_pair("code_challenge_method", "S256")
            .append_pair("allow_signup", "true");
        url.into()
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
            .post(self.token_url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&[
                ("client_id", self.credentials.client_id.as_str()),
                ("client_secret", self.credentials.client_secret.expose_secret()),
                ("code", grant.code.expose()),
                ("redirect_uri", grant.redirect_uri),
                ("code_verifier", grant.pkce_verifier.expose()),
                ("grant_type", "authorization_code"),
            ])
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
            .get(under(&self.api_url, path))
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
