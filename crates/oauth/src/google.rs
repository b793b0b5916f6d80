//! Google through OpenID Connect, with the `openidconnect` crate. Any
//! OpenID Provider works: its issuer's discovery document names the
//! endpoints and the keys.
//!
//! The ID token is validated before anything in it is believed: signature
//! (the provider's JWKS), `iss`, `aud` (and `azp`), `exp`, and the `nonce`
//! of the request. The e-mail address comes from the ID token, or else
//! from the userinfo endpoint (whose `sub` must match the ID token's).

use crate::http::{clean, endpoint};
use crate::{Credentials, GoogleConfig};
use convosphere_domain::oauth::{AuthorizationRequest, CodeGrant, Provider, ProviderError, ProviderIdentity};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdTokenClaims, CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, IssuerUrl, LocalizedClaim, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, TokenResponse,
};
use secrecy::ExposeSecret;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::RwLock;

const PROVIDER: Provider = Provider::Google;
/// How long a discovery document (with its keys) is used before it is read again.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// A signature that fails makes the keys be read again (key rotation),
/// at most this often.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// The OpenID Connect adapter (Google by default).
#[derive(Debug)]
pub struct Google {
    credentials: Credentials,
    issuer: IssuerUrl,
    http: reqwest::Client,
    metadata: RwLock<Option<(Instant, Arc<CoreProviderMetadata>)>>,
}

fn failed(what: impl std::fmt::Display) -> ProviderError {
    ProviderError::new(format!("google: {what}"))
}

/// The first non-empty value of a localized claim.
fn localized<T: std::ops::Deref<Target = String>>(claim: Option<&LocalizedClaim<T>>) -> Option<String> {
    claim
        .and_then(|c| c.get(None).or_else(|| c.iter().next().map(|(_, v)| v)))
        .map(|v| v.as_str().to_owned())
        .filter(|v| !v.trim().is_empty())
}

impl Google {
    pub(crate) fn new(config: GoogleConfig, http: reqwest::Client) -> Result<Self, crate::ConfigError> {
        let url = endpoint(PROVIDER, "issuer", &config.issuer)?;
        // The issuer is compared to the discovery document's as a string.
        let issuer = url.as_str().trim_end_matches('/').to_owned();
        Ok(Self {
            credentials: config.credentials,
            issuer: IssuerUrl::new(issuer).map_err(|e| crate::ConfigError {
                provider: PROVIDER,
                field: "issuer",
                reason: e.to_string(),
            })?,
            http,
            metadata: RwLock::new(None),
        })
    }

    /// The discovery document, read at most once an hour (or sooner when
    /// `refresh` asks and the last read is old enough).
    async fn metadata(&self, refresh: bool) -> Result<Arc<CoreProviderMetadata>, ProviderError> {
        let fresh_enough = |fetched: &Instant| {
            let age = fetched.elapsed();
            age < METADATA_TTL && !(refresh && age >= MIN_REFRESH_INTERVAL)
        };
        if let Some((fetched, metadata)) = &*self.metadata.read().await {
            if fresh_enough(fetched) {
                return Ok(metadata.clone());
            }
        }
        let mut slot = self.metadata.write().await;
        if let Some((fetched, metadata)) = &*slot {
            if fresh_enough(fetched) {
                return Ok(metadata.clone());
            }
        }
        let metadata = CoreProviderMetadata::discover_async(self.issuer.clone(), &self.http)
            .await
            .map_err(|e| {
                tracing::warn!(issuer = %self.issuer.as_str(), error = %e, "OpenID Connect discovery failed");
                failed("the discovery document could not be read")
            })?;
        let metadata = Arc::new(metadata);
        *slot = Some((Instant::now(), metadata.clone()));
        Ok(metadata)
    }

    fn client(
        &self,
        metadata: &CoreProviderMetadata,
        redirect_uri: &str,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        ProviderError,
    > {
        let redirect = RedirectUrl::new(redirect_uri.to_owned()).map_err(|e| failed(format!("redirect URI: {e}")))?;
        Ok(CoreClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(self.credentials.client_id.clone()),
            Some(ClientSecret::new(
                self.credentials.client_secret.expose_secret().to_owned(),
            )),
        )
        .set_redirect_uri(redirect))
    }

    pub(crate) async fn authorization_url(&self, request: &AuthorizationRequest<'_>) -> Result<String, ProviderError> {
        let metadata = self.metadata(false).await?;
        let client = self.client(&metadata, request.redirect_uri)?;
        let state = request.state.expose().to_owned();
        let nonce = request.nonce.to_owned();
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
            request.pkce_verifier.expose().to_owned(),
        ));
        let (url, _, _) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge)
            .url();
        Ok(url.into())
    }

    pub(crate) async fn identify(&self, grant: &CodeGrant<'_>) -> Result<ProviderIdentity, ProviderError> {
        let metadata = self.metadata(false).await?;
        let client = self.client(&metadata, grant.redirect_uri)?;
        let token = client
            .exchange_code(AuthorizationCode::new(grant.code.expose().to_owned()))
            .map_err(|e| failed(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(grant.pkce_verifier.expose().to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(answer) => failed(format!(
                    "the token endpoint refused the code: {} {}",
                    clean(answer.error().as_ref()),
                    clean(answer.error_description().map_or("", String::as_str))
                )),
                RequestTokenError::Request(e) => {
                    tracing::warn!(error = ?e, "the OpenID Provider's token endpoint could not be reached");
                    failed("the token endpoint could not be reached")
                }
                RequestTokenError::Parse(_, _) => failed("the token endpoint answered something unreadable"),
                RequestTokenError::Other(text) => failed(format!("the token endpoint failed: {}", clean(&text))),
            })?;
        let id_token = token
            .id_token()
            .ok_or_else(|| failed("the token response has no ID token"))?;
        let nonce = Nonce::new(grant.nonce.to_owned());
        let claims: CoreIdTokenClaims = match id_token.claims(&client.id_token_verifier(), &nonce) {
            Ok(claims) => claims.clone(),
            Err(ClaimsVerificationError::SignatureVerification(_)) => {
                // Perhaps the provider rotated its keys: read them again, once.
                let metadata = self.metadata(true).await?;
                let client = self.client(&metadata, grant.redirect_uri)?;
                let verifier = client.id_token_verifier();
                let claims = id_token
                    .claims(&verifier, &nonce)
                    .map_err(|e| failed(format!("the ID token is invalid: {e}")))?
                    .clone();
                claims
            }
            Err(e) => return Err(failed(format!("the ID token is invalid: {e}"))),
        };
        let subject = claims.subject().as_str().to_owned();
        let name = localized(claims.name());
        let (email, email_verified) = match claims.email() {
            Some(email) => (
                Some(email.as_str().to_owned()),
                claims.email_verified().unwrap_or(false),
            ),
            None => {
                // Not in the ID token: ask the userinfo endpoint, which must
                // speak of the same subject.
                let userinfo: CoreUserInfoClaims = client
                    .user_info(token.access_token().clone(), Some(claims.subject().clone()))
                    .map_err(|_| failed("no e-mail in the ID token and no userinfo endpoint"))?
                    .request_async(&self.http)
                    .await
                    .map_err(|e| failed(format!("the userinfo endpoint failed: {e}")))?;
                (
                    userinfo.email().map(|e| e.as_str().to_owned()),
                    userinfo.email_verified().unwrap_or(false),
                )
            }
        };
        Ok(ProviderIdentity {
            subject,
            email,
            email_verified,
            name,
        })
    }
}
