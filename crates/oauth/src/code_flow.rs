//! The OAuth 2 authorization-code flow with PKCE (RFC 6749, RFC 7636) that
//! GitHub and Facebook share: the configured endpoints, where a browser is
//! sent, and the token request's form. What each provider answers, and how
//! it tells who signed in, stays in its own module.

use crate::http::{endpoint, s256};
use crate::{ConfigError, Credentials};
use convosphere_domain::oauth::{AuthorizationRequest, CodeGrant, Provider};
use reqwest::Url;
use secrecy::ExposeSecret;

/// One provider's app and endpoints.
#[derive(Debug)]
pub(crate) struct CodeFlow {
    credentials: Credentials,
    auth_url: Url,
    /// Where the code is redeemed.
    pub(crate) token_url: Url,
    /// The API that tells who signed in.
    pub(crate) api_url: Url,
}

impl CodeFlow {
    /// Checks the configured endpoints (http(s) URLs).
    pub(crate) fn new(
        provider: Provider,
        credentials: Credentials,
        auth_url: &str,
        token_url: &str,
        api_url: &str,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            auth_url: endpoint(provider, "auth_url", auth_url)?,
            token_url: endpoint(provider, "token_url", token_url)?,
            api_url: endpoint(provider, "api_url", api_url)?,
            credentials,
        })
    }

    /// The app secret (Facebook signs API calls with it).
    pub(crate) fn client_secret(&self) -> &str {
        self.credentials.client_secret.expose_secret()
    }

    /// Where to send the browser: the app, the callback, `scopes`, the
    /// state and the S256 PKCE challenge, then the provider's `extra`
    /// parameters.
    pub(crate) fn authorization_url(
        &self,
        request: &AuthorizationRequest<'_>,
        scopes: &str,
        extra: &[(&str, &str)],
    ) -> String {
        let mut url = self.auth_url.clone();
        url.query_pairs_mut()
            .append_pair("client_id", &self.credentials.client_id)
            .append_pair("redirect_uri", request.redirect_uri)
            .append_pair("response_type", "code")
            .append_pair("scope", scopes)
            .append_pair("state", request.state.expose())
            .append_pair("code_challenge", &s256(request.pkce_verifier.expose()))
            .append_pair("code_challenge_method", "S256")
            .extend_pairs(extra);
        url.into()
    }

    /// The token request's form: the app's id and secret, the code, the
    /// callback it was issued for and the PKCE verifier.
    pub(crate) fn token_form<'a>(&'a self, grant: &'a CodeGrant<'_>) -> [(&'static str, &'a str); 6] {
        [
            ("grant_type", "authorization_code"),
            ("client_id", self.credentials.client_id.as_str()),
            ("client_secret", self.credentials.client_secret.expose_secret()),
            ("code", grant.code.expose()),
            ("redirect_uri", grant.redirect_uri),
            ("code_verifier", grant.pkce_verifier.expose()),
        ]
    }
}
