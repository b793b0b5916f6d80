//! The OAuth adapter against real parts: Google against a real OpenID
//! Provider (`oidc-provider`, see `tests/oidc/`), GitHub and Facebook against
//! local servers that answer like the documented endpoints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod github_facebook;
mod google;

use convosphere_domain::oauth::{AuthorizationRequest, CodeGrant, Provider, ProviderError, ProviderIdentity};
use convosphere_domain::ports::OAuthProvider;
use convosphere_domain::OpaqueToken;
use convosphere_oauth::OAuthClients;

/// The redirect URI the tests register and send.
pub(crate) const REDIRECT_URI: &str = "http://client.test/callback";

/// The secrets of one authorization request.
pub(crate) struct Attempt {
    /// `state`.
    pub(crate) state: OpaqueToken,
    /// The PKCE code verifier.
    pub(crate) verifier: OpaqueToken,
    /// The OIDC nonce.
    pub(crate) nonce: String,
}

impl Attempt {
    /// Fresh random secrets.
    pub(crate) fn new() -> Self {
        let random = || format!("{:032x}{:032x}", rand::random::<u128>(), rand::random::<u128>());
        Self {
            state: OpaqueToken::presented(&random()),
            verifier: OpaqueToken::presented(&random()),
            nonce: random(),
        }
    }

    /// The provider's authorization URL for this attempt.
    pub(crate) async fn url(&self, clients: &OAuthClients, provider: Provider) -> Result<String, ProviderError> {
        clients
            .authorization_url(&AuthorizationRequest {
                provider,
                state: &self.state,
                pkce_verifier: &self.verifier,
                nonce: &self.nonce,
                redirect_uri: REDIRECT_URI,
            })
            .await
    }

    /// Redeems `code` with this attempt's verifier and nonce.
    pub(crate) async fn identify(
        &self,
        clients: &OAuthClients,
        provider: Provider,
        code: &str,
    ) -> Result<ProviderIdentity, ProviderError> {
        clients
            .identify(&CodeGrant {
                provider,
                code: &OpaqueToken::presented(code),
                pkce_verifier: &self.verifier,
                nonce: &self.nonce,
                redirect_uri: REDIRECT_URI,
            })
            .await
    }
}

/// The value of one query parameter of a URL.
pub(crate) fn query(url: &str, key: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}
