//! Logging in with Google, GitHub or Facebook.
//!
//! Three steps, each its own use case:
//!
//! 1. [`Auth::oauth_start`]: checks `redirect_to`, makes `state`, a PKCE
//!    verifier, a nonce and a browser-binding secret (for a cookie), stores
//!    the authorization in flight and answers the provider's URL.
//! 2. [`Auth::oauth_callback`]: takes the authorization back, once, from
//!    the same browser and the same provider; has the provider redeem the
//!    code; finds or makes the account (the linking rules); answers where to
//!    send the browser, with a one-time code.
//! 3. [`Auth::oauth_exchange`]: trades that code, once, within a minute,
//!    for a session like any other. An account with 2FA on needs its second
//!    factor here too: the provider's login replaces the password, not the
//!    TOTP code.

use super::{Auth, FactorCheck, IssuedTokens, SecondFactor};
use crate::event::{ClientContext, EventKind};
use crate::oauth::{
    with_query, AuthorizationRequest, CodeGrant, LinkOutcome, LinkRequest, LinkedIdentity, PendingLogin, Provider,
    ProviderIdentity, RedirectPolicy,
};
use crate::ports::{
    CreateUserError, Invalidation, Mailer, OAuthProvider, OAuthRepository, PasswordHasher, Store, TokenSigner,
};
use crate::profile::{parse_name, MAX_NAME_CHARS};
use crate::{InfraError, NewUser, OpaqueToken, Plan, User, UserId};
use chrono::Duration;
use subtle::ConstantTimeEq;

/// What a PKCE verifier is sealed for: nothing else opens as one.
const OAUTH_VERIFIER: &[u8] = b"oauth pkce verifier";

/// How long a started login may take to come back.
pub const STATE_TTL: Duration = Duration::minutes(10);
/// How long the callback's one-time code works.
pub const LOGIN_CODE_TTL: Duration = Duration::seconds(60);
/// How often linking is retried when parallel logins race for an identity.
const LINK_ATTEMPTS: usize = 3;

/// What OAuth logins need besides the [`Auth`] ports: the providers and the
/// redirect policy.
pub struct OAuthLogin<P> {
    /// The identity providers.
    pub providers: P,
    /// Where browsers may be sent afterwards.
    pub redirects: RedirectPolicy,
}

/// A login just started.
#[derive(Debug)]
pub struct OAuthStarted {
    /// The provider's authorization URL (the `Location` of the 302).
    pub location: String,
    /// The secret to keep in the browser (an `HttpOnly` cookie) until the callback.
    pub browser_binding: OpaqueToken,
    /// How long the login may take, hence the cookie's lifetime.
    pub ttl: Duration,
}

/// What the provider's redirect and the browser brought to the callback.
#[derive(Debug, Default)]
pub struct OAuthCallback {
    /// `state` of the query.
    pub state: Option<String>,
    /// `code` of the query.
    pub code: Option<String>,
    /// `error` of the query (the provider's refusal, e.g. `access_denied`).
    pub error: Option<String>,
    /// The browser-binding cookie.
    pub browser_binding: Option<String>,
}

/// Outcomes of [`Auth::oauth_start`].
#[derive(Debug, thiserror::Error)]
pub enum OAuthStartError {
    /// Unknown or unconfigured provider.
    #[error("no such OAuth provider is configured")]
    ProviderNotFound,
    /// `redirect_to` is neither a path of this service nor allowlisted.
    #[error("{0}")]
    InvalidRedirect(crate::oauth::RedirectRefused),
    /// The provider could not be prepared (e.g. OIDC discovery failed).
    #[error("{0}")]
    Provider(crate::oauth::ProviderError),
    /// Infrastructure failure.
    #[error(transparent)]
    Internal(#[from] InfraError),
}

/// Outcomes of [`Auth::oauth_callback`]. `back_to` is set when the failure
/// happened after the state checked out and the caller had named a
/// `redirect_to`: the browser may then be sent back there, with `error=`.
#[derive(Debug, thiserror::Error)]
pub enum OAuthCallbackError {
    /// Unknown or unconfigured provider.
    #[error("no such OAuth provider is configured")]
    ProviderNotFound,
    /// State mismatch, provider error, no verified e-mail…
    #[error("{reason}")]
    Failed {
        /// What went wrong (no secret in it).
        reason: String,
        /// `redirect_to?error=oauth_failed`, when safe.
        back_to: Option<String>,
    },
    /// The account is suspended.
    #[error("the account is locked")]
    Locked {
        /// `redirect_to?error=account_locked`, when safe.
        back_to: Option<String>,
    },
    /// Infrastructure failure.
    #[error(transparent)]
    Internal(#[from] InfraError),
}

/// Outcomes of [`Auth::oauth_exchange`].
#[derive(Debug, thiserror::Error)]
pub enum OAuthExchangeError {
    /// Unknown, used or expired code.
    #[error("the code is invalid, used or expired")]
    Failed,
    /// The account is suspended, or locked out after wrong second factors.
    #[error("the account is locked")]
    Locked,
    /// 2FA is on and no code came with the exchange; the code still works
    /// (for the rest of its minute) together with one.
    #[error("a TOTP or recovery code is required")]
    MfaRequired,
    /// 2FA is on and the code was wrong or used; counted toward the lockout.
    #[error("the TOTP or recovery code is wrong or used")]
    InvalidMfaCode,
    /// Infrastructure failure.
    #[error(transparent)]
    Internal(#[from] InfraError),
}

/// Why no account could be found or made for an identity.
enum AccountError {
    NoVerifiedEmail,
    Locked,
    Internal(InfraError),
}

impl From<InfraError> for AccountError {
    fn from(e: InfraError) -> Self {
        Self::Internal(e)
    }
}

impl<S, H, T, M, L> Auth<S, H, T, M, L>
where
    S: Store + OAuthRepository,
    H: PasswordHasher,
    T: TokenSigner,
    M: Mailer,
{
    /// `<AUTH_PUBLIC_URL>/v1/auth/oauth/<provider>/callback`: one per
    /// provider, so a code of one provider cannot be played at another's.
    pub fn oauth_redirect_uri(&self, provider: Provider) -> String {
        format!("{}/v1/auth/oauth/{provider}/callback", self.config.public_url)
    }

    /// Starts a login with `provider`. `redirect_to` (absent or empty for
    /// the dashboard) must pass the redirect policy.
    pub async fn oauth_start<P: OAuthProvider>(
        &self,
        oauth: &OAuthLogin<P>,
        provider: Provider,
        redirect_to: Option<&str>,
    ) -> Result<OAuthStarted, OAuthStartError> {
        self.begin_authorization(oauth, provider, redirect_to, None).await
    }

    /// Checks the provider and `redirect_to`, stores an authorization in
    /// flight (a login, or a link for `link`) and answers the provider's URL.
    pub(super) async fn begin_authorization<P: OAuthProvider>(
        &self,
        oauth: &OAuthLogin<P>,
        provider: Provider,
        redirect_to: Option<&str>,
        link: Option<LinkRequest>,
    ) -> Result<OAuthStarted, OAuthStartError> {
        if !oauth.providers.is_enabled(provider) {
            return Err(OAuthStartError::ProviderNotFound);
        }
        let redirect_to = match redirect_to.filter(|r| !r.is_empty()) {
            Some(raw) => Some(oauth.redirects.check(raw).map_err(OAuthStartError::InvalidRedirect)?),
            None => None,
        };
        let now = self.clock.now();
        let state = OpaqueToken::generate(&*self.rng);
        let verifier = OpaqueToken::generate(&*self.rng);
        let nonce = OpaqueToken::generate(&*self.rng);
        let browser_binding = OpaqueToken::generate(&*self.rng);
        let redirect_uri = self.oauth_redirect_uri(provider);
        let location = oauth
            .providers
            .authorization_url(&AuthorizationRequest {
                provider,
                state: &state,
                pkce_verifier: &verifier,
                nonce: nonce.expose(),
                redirect_uri: &redirect_uri,
            })
            .await
            .map_err(OAuthStartError::Provider)?;
        self.store
            .save_pending_login(&PendingLogin {
                state: state.hash(),
                provider,
                browser: browser_binding.hash(),
                sealed_verifier: self.secrets.seal(verifier.expose().as_bytes(), OAUTH_VERIFIER)?,
                nonce: nonce.expose().to_owned(),
                redirect_to,
                link,
                created_at: now,
                expires_at: now + STATE_TTL,
            })
            .await?;
        Ok(OAuthStarted {
            location,
            browser_binding,
            ttl: STATE_TTL,
        })
    }

    /// Finishes the provider's part: answers where to send the browser,
    /// with `code=` (a one-time code for [`oauth_exchange`](Self::oauth_exchange)).
    pub async fn oauth_callback<P: OAuthProvider>(
        &self,
        oauth: &OAuthLogin<P>,
        provider: Provider,
        callback: OAuthCallback,
        client: &ClientContext,
    ) -> Result<String, OAuthCallbackError> {
        if !oauth.providers.is_enabled(provider) {
            return Err(OAuthCallbackError::ProviderNotFound);
        }
        let refused = |reason: &str| OAuthCallbackError::Failed {
            reason: reason.to_owned(),
            back_to: None,
        };
        let state = callback
            .state
            .filter(|s| !s.is_empty())
            .ok_or_else(|| refused("the callback carries no state"))?;
        let now = self.clock.now();
        // Taken, hence dead, whatever follows: a state works once.
        let pending = self
            .store
            .take_pending_login(&OpaqueToken::presented(&state).hash())
            .await?
            .ok_or_else(|| refused("the state is unknown or was used already"))?;
        if pending.provider != provider {
            return Err(refused("the state belongs to another provider"));
        }
        if pending.expires_at <= now {
            return Err(refused("the login took too long; start again"));
        }
        let same_browser = callback.browser_binding.as_deref().is_some_and(|binding| {
            let presented = OpaqueToken::presented(binding).hash();
            bool::from(presented.0.ct_eq(&pending.browser.0))
        });
        if !same_browser {
            return Err(refused("the login was started in another browser"));
        }

        // The state checked out: a redirect_to named at start is safe to return to.
        let back_to = |error: &str| pending.redirect_to.as_deref().map(|to| with_query(to, "error", error));
        let failed = |reason: String| OAuthCallbackError::Failed {
            reason,
            back_to: back_to("oauth_failed"),
        };
        if let Some(error) = callback.error.filter(|e| !e.is_empty()) {
            let error: String = error.chars().filter(|c| !c.is_control()).take(100).collect();
            return Err(failed(format!("the provider answered {error}")));
        }
        let code = callback
            .code
            .filter(|c| !c.is_empty())
            .ok_or_else(|| failed("the callback carries no code".into()))?;
        let verifier = String::from_utf8(self.secrets.open(&pending.sealed_verifier, OAUTH_VERIFIER)?)
            .map_err(|_| InfraError::new("a stored PKCE verifier is not text"))?;
        let redirect_uri = self.oauth_redirect_uri(provider);
        let identity = oauth
            .providers
            .identify(&CodeGrant {
                provider,
                code: &OpaqueToken::presented(&code),
                pkce_verifier: &OpaqueToken::presented(&verifier),
                nonce: &pending.nonce,
                redirect_uri: &redirect_uri,
            })
            .await
            .map_err(|e| failed(format!("{provider}: {e}")))?;
        if let Some(link) = pending.link {
            let target = pending.redirect_to.unwrap_or_else(|| oauth.redirects.default_target());
            return self.finish_link(link, provider, &identity, &target, client).await;
        }
        let user = match self.oauth_account(provider, &identity, client).await {
            Ok(user) => user,
            Err(AccountError::NoVerifiedEmail) => {
                return Err(failed(format!("{provider} did not give a verified e-mail address")))
            }
            Err(AccountError::Locked) => {
                return Err(OAuthCallbackError::Locked {
                    back_to: back_to("account_locked"),
                })
            }
            Err(AccountError::Internal(e)) => return Err(e.into()),
        };
        let login_code = OpaqueToken::generate(&*self.rng);
        self.store
            .issue_login_code(&login_code.hash(), user.id, provider, now, now + LOGIN_CODE_TTL)
            .await?;
        let target = pending.redirect_to.unwrap_or_else(|| oauth.redirects.default_target());
        Ok(with_query(&target, "code", login_code.expose()))
    }

    /// Trades the callback's one-time code for a session (one of the user's
    /// [`max_sessions`](super::AuthConfig::max_sessions)), and records the
    /// login with `method=oauth:<provider>` (`+totp` with a second factor).
    ///
    /// With 2FA on, `factor` must hold a TOTP or recovery code, checked as
    /// at the password login; without one the answer is
    /// [`MfaRequired`](OAuthExchangeError::MfaRequired) and the code is kept,
    /// so the client can ask for the factor and try again within the minute.
    pub async fn oauth_exchange(
        &self,
        code: &str,
        factor: &SecondFactor,
        client: &ClientContext,
    ) -> Result<IssuedTokens, OAuthExchangeError> {
        let now = self.clock.now();
        let code = OpaqueToken::presented(code).hash();
        let (user_id, provider) = self
            .store
            .login_code_owner(&code, now)
            .await?
            .ok_or(OAuthExchangeError::Failed)?;
        let user = self
            .store
            .user_by_id(user_id)
            .await?
            .ok_or(OAuthExchangeError::Failed)?;
        if user.suspended {
            self.oauth_refused(user.id, provider, "suspended", client).await?;
            return Err(OAuthExchangeError::Locked);
        }
        let mut method = provider.login_method().to_owned();
        if user.mfa_enabled {
            // Wrong codes lock the account like at the password login, and
            // a locked account takes no more of them.
            if user.is_locked_out(now) {
                self.oauth_refused(user.id, provider, "locked_out", client).await?;
                return Err(OAuthExchangeError::Locked);
            }
            match self.check_second_factor(&user, factor, client).await? {
                FactorCheck::Missing => return Err(OAuthExchangeError::MfaRequired),
                FactorCheck::Wrong => return Err(OAuthExchangeError::InvalidMfaCode),
                FactorCheck::Passed => method.push_str("+totp"),
            }
        }
        // Used only now, and once: of parallel exchanges one gets the session.
        self.store
            .consume_login_code(&code, now)
            .await?
            .ok_or(OAuthExchangeError::Failed)?;
        if user.mfa_enabled && user.failed_logins > 0 {
            self.clear_failures(user.id).await?;
        }
        let mut amr = vec![crate::AuthMethod::Federated];
        if user.mfa_enabled {
            amr.push(crate::AuthMethod::OneTimeCode);
        }
        Ok(self.open_session(user, amr, &method, client).await?)
    }

    async fn oauth_refused(
        &self,
        user: UserId,
        provider: Provider,
        reason: &str,
        client: &ClientContext,
    ) -> Result<(), InfraError> {
        let details = [("reason", reason), ("method", provider.login_method())];
        self.record(user, EventKind::LoginFailed, client, &details).await
    }

    /// The linking rules: the account of (provider, subject); else the
    /// account with the provider-verified address, which the identity
    /// joins; else a new account. No verified address: nothing is made.
    async fn oauth_account(
        &self,
        provider: Provider,
        identity: &ProviderIdentity,
        client: &ClientContext,
    ) -> Result<User, AccountError> {
        let usable = |user: User| async move {
            if user.suspended {
                self.oauth_refused(user.id, provider, "suspended", client).await?;
                return Err(AccountError::Locked);
            }
            Ok(user)
        };
        // Parallel first logins of one person race; each loser looks again.
        for _ in 0..LINK_ATTEMPTS {
            if let Some(owner) = self.store.identity_owner(provider, &identity.subject).await? {
                self.store
                    .note_identity_use(provider, &identity.subject, self.clock.now())
                    .await?;
                let user = self
                    .store
                    .user_by_id(owner)
                    .await?
                    .ok_or_else(|| InfraError::new("a linked identity's account is gone"))?;
                return usable(user).await;
            }
            let email = identity.verified_email().ok_or(AccountError::NoVerifiedEmail)?;
            let now = self.clock.now();
            let existing = self.store.user_by_email(&email).await?;
            let link = |user_id| LinkedIdentity {
                provider,
                subject: identity.subject.clone(),
                user_id,
                email: email.clone(),
                created_at: now,
            };
            match existing {
                Some(user) => {
                    let user = usable(user).await?;
                    if self.store.link_identity(&link(user.id)).await? == LinkOutcome::Linked {
                        self.forget(Invalidation::User(user.id));
                        let claimed = if user.email_verified { "false" } else { "true" };
                        let details = [("provider", provider.as_str()), ("claimed_unverified", claimed)];
                        self.record(user.id, EventKind::OAuthLinked, client, &details).await?;
                        // Re-read: linking may have verified the address.
                        return self
                            .store
                            .user_by_id(user.id)
                            .await?
                            .ok_or_else(|| InfraError::new("a linked account is gone").into());
                    }
                }
                None => {
                    let new_user = NewUser {
                        id: UserId::generate(now, &*self.rng),
                        name: display_name(identity, &email),
                        email: email.clone(),
                        email_verified: true,
                        password_hash: None,
                        company: None,
                        country: None,
                        phone: None,
                        plan: Plan::Free,
                        created_at: now,
                    };
                    match self
                        .store
                        .create_user_with_identity(&new_user, &link(new_user.id))
                        .await
                    {
                        Ok(user) => {
                            let details = [("method", provider.login_method())];
                            self.record(user.id, EventKind::Signup, client, &details).await?;
                            return Ok(user);
                        }
                        Err(CreateUserError::EmailTaken) => {}
                        Err(CreateUserError::Infra(e)) => return Err(e.into()),
                    }
                }
            }
        }
        Err(InfraError::new("parallel logins kept racing for one provider identity").into())
    }
}

/// The provider's name for the person if it is a valid name, else the
/// address's local part.
fn display_name(identity: &ProviderIdentity, email: &crate::Email) -> String {
    let mut errors = Vec::new();
    if let Some(name) = identity.name.as_deref() {
        let name = parse_name(name, &mut errors);
        if errors.is_empty() {
            return name;
        }
    }
    let local = email.as_str().split('@').next().unwrap_or_default();
    local.chars().take(MAX_NAME_CHARS).collect()
}
