//! Facebook: the OAuth 2 code flow (with PKCE), then the Graph API's `/me`
//! with `id,name,email`. Facebook hands out only addresses it has
//! confirmed, so an `email` it gives counts as verified.

use crate::code_flow::CodeFlow;
use crate::http::{clean, refused, under, unreachable};
use crate::FacebookConfig;
use convosphere_domain::oauth::{AuthorizationRequest, CodeGrant, Provider, ProviderError, ProviderIdentity};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

const PROVIDER: Provider = Provider::Facebook;
const SCOPES: &str = "email public_profile";

/// The Facebook adapter.
#[derive(Debug)]
pub struct Facebook {
    flow: CodeFlow,
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
        self.flow.authorization_url(request, SCOPES, &[])
    }

    pub(crate) async fn identify(&self, grant: &CodeGrant<'_>) -> Result<ProviderIdentity, ProviderError> {
        let token = self.redeem(grant).await?;
        let what = "/me";
        let mut url = under(&self.flow.api_url, "me");
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
        let secret = self.flow.client_secret().as_bytes();
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
            .post(self.flow.token_url.clone())
            .form(&self.flow.token_form(grant))
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
