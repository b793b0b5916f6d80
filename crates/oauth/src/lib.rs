#![doc = include_str!("../README.md")]

mod code_flow;
mod facebook;
mod github;
mod google;
mod http;
#[cfg(feature = "testing")]
pub mod testing;

use convosphere_domain::oauth::{AuthorizationRequest, CodeGrant, Provider, ProviderError, ProviderIdentity};
use convosphere_domain::ports::OAuthProvider;
use secrecy::SecretString;
use std::time::Duration;

pub use facebook::Facebook;
pub use github::GitHub;
pub use google::Google;

/// The client credentials a provider issued to this service.
#[derive(Clone)]
pub struct Credentials {
    /// The client (app) id.
    pub client_id: String,
    /// The client (app) secret.
    pub client_secret: SecretString,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .finish()
    }
}

/// Google, or any OpenID Provider found by discovery.
#[derive(Debug, Clone)]
pub struct GoogleConfig {
    /// Client id and secret.
    pub credentials: Credentials,
    /// The issuer; `<issuer>/.well-known/openid-configuration` is read.
    pub issuer: String,
}

impl GoogleConfig {
    /// Google's issuer.
    pub const DEFAULT_ISSUER: &'static str = "https://accounts.google.com";
}

/// GitHub's (or GitHub Enterprise's) endpoints.
#[derive(Debug, Clone)]
pub struct GitHubConfig {
    /// Client id and secret of the OAuth app.
    pub credentials: Credentials,
    /// The authorization endpoint.
    pub auth_url: String,
    /// The token endpoint.
    pub token_url: String,
    /// The REST API base (`/user` and `/user/emails` are under it).
    pub api_url: String,
}

impl GitHubConfig {
    /// github.com's authorization endpoint.
    pub const DEFAULT_AUTH_URL: &'static str = "https://github.com/login/oauth/authorize";
    /// github.com's token endpoint.
    pub const DEFAULT_TOKEN_URL: &'static str = "https://github.com/login/oauth/access_token";
    /// github.com's REST API.
    pub const DEFAULT_API_URL: &'static str = "https://api.github.com";
}

/// Facebook's endpoints.
#[derive(Debug, Clone)]
pub struct FacebookConfig {
    /// App id and secret.
    pub credentials: Credentials,
    /// The login dialog.
    pub auth_url: String,
    /// The token endpoint.
    pub token_url: String,
    /// The Graph API base (`/me` is under it).
    pub api_url: String,
}

impl FacebookConfig {
    /// Facebook's login dialog (Graph API version pinned).
    pub const DEFAULT_AUTH_URL: &'static str = "https://www.facebook.com/v22.0/dialog/oauth";
    /// Facebook's token endpoint.
    pub const DEFAULT_TOKEN_URL: &'static str = "https://graph.facebook.com/v22.0/oauth/access_token";
    /// The Graph API.
    pub const DEFAULT_API_URL: &'static str = "https://graph.facebook.com/v22.0";
}

/// Which providers are configured; `None` disables one.
#[derive(Debug, Clone, Default)]
pub struct OAuthConfig {
    /// Google (OpenID Connect).
    pub google: Option<GoogleConfig>,
    /// GitHub.
    pub github: Option<GitHubConfig>,
    /// Facebook.
    pub facebook: Option<FacebookConfig>,
}

/// A configured endpoint is not an http(s) URL.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{provider} {field}: {reason}")]
pub struct ConfigError {
    /// The provider.
    pub provider: Provider,
    /// `issuer`, `auth_url`, `token_url` or `api_url`.
    pub field: &'static str,
    /// Why.
    pub reason: String,
}

/// How long one call to a provider may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The [`OAuthProvider`] port: every configured provider behind one value.
#[derive(Debug)]
pub struct OAuthClients {
    google: Option<Google>,
    github: Option<GitHub>,
    facebook: Option<Facebook>,
}

impl OAuthClients {
    /// Builds the configured providers. Nothing is fetched yet: Google's
    /// discovery document is read at the first login (and kept an hour), so
    /// the service starts even when a provider is down.
    pub fn new(config: OAuthConfig) -> Result<Self, ConfigError> {
        let http = http::client();
        Ok(Self {
            google: config.google.map(|c| Google::new(c, http.clone())).transpose()?,
            github: config.github.map(|c| GitHub::new(c, http.clone())).transpose()?,
            facebook: config.facebook.map(|c| Facebook::new(c, http.clone())).transpose()?,
        })
    }

    /// The providers that are configured.
    pub fn enabled(&self) -> Vec<Provider> {
        Provider::ALL.into_iter().filter(|p| self.is_enabled(*p)).collect()
    }
}

fn not_configured(provider: Provider) -> ProviderError {
    ProviderError::new(format!("{provider} is not configured"))
}

impl OAuthProvider for OAuthClients {
    fn is_enabled(&self, provider: Provider) -> bool {
        match provider {
            Provider::Google => self.google.is_some(),
            Provider::GitHub => self.github.is_some(),
            Provider::Facebook => self.facebook.is_some(),
        }
    }

    async fn authorization_url(&self, request: &AuthorizationRequest<'_>) -> Result<String, ProviderError> {
        let provider = request.provider;
        match provider {
            Provider::Google => {
                self.google
                    .as_ref()
                    .ok_or_else(|| not_configured(provider))?
                    .authorization_url(request)
                    .await
            }
            Provider::GitHub => Ok(self
                .github
                .as_ref()
                .ok_or_else(|| not_configured(provider))?
                .authorization_url(request)),
            Provider::Facebook => Ok(self
                .facebook
                .as_ref()
                .ok_or_else(|| not_configured(provider))?
                .authorization_url(request)),
        }
    }

    async fn identify(&self, grant: &CodeGrant<'_>) -> Result<ProviderIdentity, ProviderError> {
        let provider = grant.provider;
        match provider {
            Provider::Google => {
                self.google
                    .as_ref()
                    .ok_or_else(|| not_configured(provider))?
                    .identify(grant)
                    .await
            }
            Provider::GitHub => {
                self.github
                    .as_ref()
                    .ok_or_else(|| not_configured(provider))?
                    .identify(grant)
                    .await
            }
            Provider::Facebook => {
                self.facebook
                    .as_ref()
                    .ok_or_else(|| not_configured(provider))?
                    .identify(grant)
                    .await
            }
        }
    }
}
