//! Facebook: the OAuth 2 code flow (with PKCE), then the Graph API's `/me`
//! with `id,name,email`. Facebook hands out only addresses it has
//! confirmed, so an `email` it gives counts as verified.

use crate::http::{clean, endpoint, refused, under, unreachable};
use crate::{Credentials, FacebookConfig};
use convosphere_domain::oauth::{AuthorizationRequest, CodeGrant, Provider, ProviderError, ProviderIdentity};
use hmac::{Hmac, Mac};
use reqwest::Url;
use secrecy::ExposeSecret;
use serde::Deserialize;
use sha2::Sha256;

const PROVIDER: Provider = Provider::Facebook;
const SCOPES: &str = "email public_profile";

/// The Facebook adapter.
#[derive(Debug)]
pub struct Facebook {
    credentials: Credentials,
    auth_url: Url,
    token_url: Url,
    api_url: Url,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    error: Option<GraphError>,
}

#[derive(Deserialize)]
struct GraphError {
    message: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct Me {
    id: String,
    name: Option<String>,
    email: Option<String>,
}

impl Facebook {
    pub(crate) fn new(config: FacebookConfig, http: reqwest::Client) -> Result<Self, crate::ConfigError> {
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
            .append_pair("response_type", "code")
            .append_pair("scope", SCOPES)
            .append_pair("state", request.state.expose())
            .append_pair("code_challenge", &crate::http::s256(request.pkce_verifier.expose()))
            .append_pair("code_challenge_method", "S256");
        url.into()
    }

    pub(crate) async fn identify(&self, grant: &CodeGrant<'_>) -> Result<ProviderIdentity, ProviderError> {
        let token = self.redeem(grant).await?;
        let what = "/me";
        let mut url = under(&self.api_url, "me");
        url.query_pairs_mut()
            .append_pair("fields", "id,name,email")
            .append_pair("appsecret_proof", &self.appsecret_proof(&token));
        let response = self
            .http
            .get(url)
            .bearer_auth(&token)
            .send()
            .await
            .map_err(|e| unreachable(PROVIDER, what, &e))?;
        if !response.status().is_success() {
            return Err(refused(PROVIDER, what, response.status()));
        }
        let me: Me = response.json().await.map_err(|e| unreachable(PROVIDER, what, &e))?;
        if me.id.is_empty() {
            return Err(ProviderError::new("facebook's /me gave no id"));
        }
        Ok(ProviderIdentity {
            subject: me.id,
            email_verified: me.email.is_some(),
            email: me.email,
            name: me.name,
        })
    }

    /// `appsecret_proof`: HMAC-SHA256 of the token under the app secret, so
    /// a stolen token is useless without the secret.
    fn appsecret_proof(&self, token: &str) -> String {
        let secret = self.credentials.client_secret.expose_secret().as_bytes();
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
            return String::new();
        };
        mac.update(token.as_bytes());
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    async fn redeem(&self, grant: &CodeGrant<'_>) -> Result<String, ProviderError> {
        let what = "token endpoint";
        let response = self
            .http
            .post(self.token_url.clone())
            .form(&[
                ("client_id", self.credentials.client_id.as_str()),
                ("client_secret", self.credentials.client_secret.expose_secret()),
                ("code", grant.code.expose()),
                ("redirect_uri", grant.redirect_uri),
                ("code_verifier", grant.pkce_verifier.expose()),
            ])
            .send()
            .await
            .map_err(|e| unreachable(PROVIDER, what, &e))?;
        let status = response.status();
        let answer: Option<TokenAnswer> = response.json().await.ok();
        if let Some(TokenAnswer { error: Some(error), .. }) = &answer {
            return Err(ProviderError::new(format!(
                "facebook refused the code: {} {}",
                clean(error.kind.as_deref().unwrap_or("error")),
                clean(error.message.as_deref().unwrap_or_default())
            )));
        }
        if !status.is_success() {
            return Err(refused(PROVIDER, what, status));
        }
        answer
            .and_then(|a| a.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ProviderError::new("facebook's token endpoint gave no access token"))
    }
}
