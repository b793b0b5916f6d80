//! Wiring: configuration in, adapters built, use cases ready.

use crate::config::Config;
use crate::metrics::Metrics;
use crate::usage::UsageRecorder;
use convosphere_cache::CallerCache;
use convosphere_crypto::{Argon2Hasher, JwtSigner, OsRng, Sealer, SystemClock};
use convosphere_domain::auth::oauth::OAuthLogin;
use convosphere_domain::oauth::{Provider, RedirectPolicy};
use convosphere_domain::{Auth, AuthConfig, Runtime};
use convosphere_mail::MailService;
use convosphere_oauth::{
    Credentials, FacebookConfig, GitHubConfig, GoogleConfig, OAuthClients, OAuthConfig as ProvidersConfig,
};
use convosphere_passkey::WebauthnVerifier;
use convosphere_ratelimit::{MemoryRateLimiter, RedisRateLimiter};
use convosphere_store::Store;
use std::sync::Arc;

/// The use cases, wired to the production adapters.
pub type AppAuth = Auth<Store, Argon2Hasher, JwtSigner, MailService, Limiter>;

/// The name people see in their authenticator apps and passkey managers.
const MFA_ISSUER: &str = "Convosphere AI";

/// Why the service could not start: one line for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

impl From<crate::config::ConfigError> for StartError {
    fn from(e: crate::config::ConfigError) -> Self {
        Self(e.0)
    }
}

/// What every request handler shares.
pub struct AppState {
    /// The use cases.
    pub auth: AppAuth,
    /// The configuration.
    pub config: Config,
    /// The per-IP limiter of the unauthenticated endpoints (always in
    /// memory: it guards one instance's password hashing).
    pub ip_limiter: MemoryRateLimiter,
    /// The storage adapter, for what is no use case: readiness, the
    /// invalidation feed, the batched writes of key uses, the purge.
    pub store: Store,
    /// The checked credentials the use cases remember.
    pub credentials: Arc<CallerCache>,
    /// The per-account plan limiter (memory or Redis), also held by the use cases.
    pub limiter: Limiter,
    /// Usage counts and key uses waiting to be written.
    pub usage: UsageRecorder,
    /// Metrics.
    pub metrics: Metrics,
    /// The JWKS document, rendered once.
    pub jwks: String,
    /// The web pages' keys (session cookie, CSRF) and refresh cache.
    pub web: crate::common::cookie::WebState,
    /// The OAuth providers and the redirect policy.
    pub oauth: OAuthLogin<OAuthClients>,
    /// The WebAuthn ceremonies of passkeys; `None` when the public URL's
    /// host is an IP address, which WebAuthn does not accept as an RP id.
    pub passkeys: Option<WebauthnVerifier>,
    mail: MailService,
    /// Permits for work done after answering (see [`after_answer`]).
    background: Arc<tokio::sync::Semaphore>,
}

/// How many jobs [`after_answer`] runs at once; a caller beyond that waits
/// for a permit before answering, so a flood is held back, not queued.
const BACKGROUND_JOBS: usize = 64;

/// Runs `job` after the answer is sent: for work whose cost would tell a
/// caller something (a reset link written only for a known address).
/// A failure is logged with `what`; the caller already has its answer.
pub async fn after_answer<F, Fut>(state: &actix_web::web::Data<AppState>, what: &'static str, job: F)
where
    F: FnOnce(Arc<AppState>) -> Fut + 'static,
    Fut: std::future::Future<Output = Result<(), convosphere_domain::InfraError>> + 'static,
{
    let Ok(permit) = state.background.clone().acquire_owned().await else {
        return;
    };
    let state = state.clone().into_inner();
    actix_web::rt::spawn(async move {
        let _permit = permit;
        if let Err(error) = job(state).await {
            tracing::error!(%error, "{what} failed after the answer was sent");
        }
    });
}

fn chrono(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// The mail adapter's configuration from the service's.
pub fn mail_config(config: &Config) -> convosphere_mail::MailConfig {
    convosphere_mail::MailConfig {
        from: config.mail_from.clone(),
        transport: match &config.smtp_url {
            Some(url) => convosphere_mail::Transport::Smtp(url.clone()),
            None => convosphere_mail::Transport::Outbox(config.data_dir.join("outbox")),
        },
        email_verify_ttl: config.email_verify_ttl,
        password_reset_ttl: config.password_reset_ttl,
        email_change_ttl: config.email_change_ttl,
        ..convosphere_mail::MailConfig::default()
    }
}

/// Opens the database named by the configuration (and creates the data
/// directory for the embedded defaults).
pub async fn open_store(config: &Config) -> Result<Store, StartError> {
    if config.database_url.starts_with("sqlite://") {
        let mut private = std::fs::DirBuilder::new();
        private.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut private, 0o700);
        private.create(&config.data_dir).map_err(|e| {
            StartError(format!(
                "AUTH_DATA_DIR: cannot create {}: {e}",
                config.data_dir.display()
            ))
        })?;
    }
    Store::connect(&config.database_url)
        .await
        .map_err(|e| StartError(format!("AUTH_DATABASE_URL: {e}")))
}

impl AppState {
    /// Builds every adapter; the database must be migrated already.
    pub async fn build(config: Config, store: Store) -> Result<Self, StartError> {
        let signing_key = convosphere_crypto::load_or_generate_signing_key(&config.jwt_key_file)
            .map_err(|e| StartError(format!("AUTH_JWT_KEY_FILE: {e}")))?;
        let secret_key = convosphere_crypto::load_or_generate_secret_key(&config.secret_key_file)
            .map_err(|e| StartError(format!("AUTH_SECRET_KEY_FILE: {e}")))?;
        let signer = JwtSigner::new(&signing_key, &config.public_url)
            .map_err(|e| StartError(format!("AUTH_JWT_KEY_FILE: {e}")))?;
        let jwks = signer.jwks().to_string();
        let hasher = Argon2Hasher::owasp().map_err(|e| StartError(format!("password hasher: {e}")))?;
        let mail = MailService::start(mail_config(&config)).map_err(|e| StartError(format!("AUTH_SMTP_URL: {e}")))?;
        let auth_config = AuthConfig {
            public_url: config.public_url.clone(),
            access_token_ttl: chrono(config.access_token_ttl),
            refresh_token_ttl: chrono(config.refresh_token_ttl),
            session_idle_timeout: chrono(config.session_idle_timeout),
            max_sessions: config.max_sessions,
            email_verify_ttl: chrono(config.email_verify_ttl),
            password_reset_ttl: chrono(config.password_reset_ttl),
            email_change_ttl: chrono(config.email_change_ttl),
            lockout_threshold: config.lockout_threshold,
            lockout_duration: chrono(config.lockout_duration),
            mfa_issuer: MFA_ISSUER.into(),
            plan_limits: config.rate_limits,
            reauth_window: chrono(config.reauth_window),
        };
        let limiter = Limiter::from_config(&config).await?;
        let web = crate::common::cookie::WebState::new(&secret_key, config.is_https());
        let oauth = oauth_login(&config)?;
        let passkeys = passkey_verifier(&config)?;
        let credentials = Arc::new(CallerCache::new(convosphere_cache::CAPACITY));
        let auth = Auth::new(
            store.clone(),
            hasher,
            signer,
            mail.clone(),
            limiter.clone(),
            Runtime {
                clock: Arc::new(SystemClock),
                rng: Arc::new(OsRng),
                secrets: Arc::new(Sealer::new(&secret_key)),
                credentials: credentials.clone(),
            },
            auth_config,
        );
        Ok(Self {
            auth,
            store,
            credentials,
            ip_limiter: MemoryRateLimiter::new(),
            limiter,
            usage: UsageRecorder::default(),
            metrics: Metrics::new().map_err(|e| StartError(format!("metrics: {e}")))?,
            jwks,
            web,
            oauth,
            passkeys,
            config,
            mail,
            background: Arc::new(tokio::sync::Semaphore::new(BACKGROUND_JOBS)),
        })
    }

    /// Refreshes the mail gauges from the mail service's counters.
    pub fn update_gauges(&self) {
        self.metrics
            .rate_limiter_failures
            .set(i64::try_from(self.limiter.failures()).unwrap_or(i64::MAX));
        let stats = self.mail.stats();
        self.metrics
            .mail_sent
            .set(i64::try_from(stats.sent).unwrap_or(i64::MAX));
        self.metrics
            .mail_failed
            .set(i64::try_from(stats.failed).unwrap_or(i64::MAX));
    }

    /// Writes pending usage and lets queued mail go out before the process exits.
    pub async fn shutdown(&self) {
        self.usage.flush(&self.auth).await;
        self.mail.shutdown(std::time::Duration::from_secs(10)).await;
    }
}

/// The relying party of passkeys, unless the public URL is an IP address
/// (the default `http://127.0.0.1:8080`): browsers and webauthn-rs want a
/// domain, such as `localhost`.
fn passkey_verifier(config: &Config) -> Result<Option<WebauthnVerifier>, StartError> {
    if config.webauthn_rp_id.parse::<std::net::IpAddr>().is_ok() {
        // At info, as the other start-up facts: the command line shows warnings only.
        tracing::info!(
            rp_id = %config.webauthn_rp_id,
            "passkeys are off: WebAuthn needs a domain (e.g. AUTH_PUBLIC_URL=http://localhost:8080), not an IP address"
        );
        return Ok(None);
    }
    WebauthnVerifier::new(&config.webauthn_rp_id, &config.public_url, MFA_ISSUER)
        .map(Some)
        .map_err(|e| StartError(format!("AUTH_WEBAUTHN_RP_ID: {e}")))
}

/// The OAuth providers named by the configuration (a provider without a
/// client id is off), and the redirect policy.
fn oauth_login(config: &Config) -> Result<OAuthLogin<OAuthClients>, StartError> {
    use crate::config::OAuthProviderConfig;
    fn credentials(c: &OAuthProviderConfig) -> Option<Credentials> {
        Some(Credentials {
            client_id: c.client_id.clone()?,
            client_secret: c.client_secret.clone().unwrap_or_else(|| "".into()),
        })
    }
    let endpoint = |c: &OAuthProviderConfig, name: &str, default: &str| {
        c.endpoints.get(name).cloned().unwrap_or_else(|| default.to_owned())
    };
    let (google, github, facebook) = (&config.oauth_google, &config.oauth_github, &config.oauth_facebook);
    let providers = OAuthClients::new(ProvidersConfig {
        google: credentials(google).map(|credentials| GoogleConfig {
            credentials,
            issuer: endpoint(google, "ISSUER", GoogleConfig::DEFAULT_ISSUER),
        }),
        github: credentials(github).map(|credentials| GitHubConfig {
            credentials,
            auth_url: endpoint(github, "AUTH_URL", GitHubConfig::DEFAULT_AUTH_URL),
            token_url: endpoint(github, "TOKEN_URL", GitHubConfig::DEFAULT_TOKEN_URL),
            api_url: endpoint(github, "API_URL", GitHubConfig::DEFAULT_API_URL),
        }),
        facebook: credentials(facebook).map(|credentials| FacebookConfig {
            credentials,
            auth_url: endpoint(facebook, "AUTH_URL", FacebookConfig::DEFAULT_AUTH_URL),
            token_url: endpoint(facebook, "TOKEN_URL", FacebookConfig::DEFAULT_TOKEN_URL),
            api_url: endpoint(facebook, "API_URL", FacebookConfig::DEFAULT_API_URL),
        }),
    })
    .map_err(|e| {
        let provider = match e.provider {
            Provider::Google => "GOOGLE",
            Provider::GitHub => "GITHUB",
            Provider::Facebook => "FACEBOOK",
        };
        StartError(format!(
            "AUTH_OAUTH_{provider}_{}: {}",
            e.field.to_uppercase(),
            e.reason
        ))
    })?;
    let enabled: Vec<&str> = providers.enabled().iter().map(Provider::as_str).collect();
    tracing::info!(providers = ?enabled, "OAuth providers");
    let redirects = RedirectPolicy::new(&config.public_url, &config.oauth_redirect_allowlist)
        .map_err(|e| StartError(format!("AUTH_OAUTH_REDIRECT_ALLOWLIST: {e}")))?;
    Ok(OAuthLogin { providers, redirects })
}

/// The plan limiter: in memory for one instance, in Redis for many.
/// Cheap to clone: clones share one limiter.
#[derive(Clone)]
pub enum Limiter {
    /// governor, in this process.
    Memory(Arc<MemoryRateLimiter>),
    /// GCRA in Redis, shared by every instance; fails open (see the ratelimit crate).
    Redis(Arc<RedisRateLimiter>),
}

impl Limiter {
    /// Checks answered without Redis (always 0 in memory).
    pub fn failures(&self) -> u64 {
        match self {
            Limiter::Memory(_) => 0,
            Limiter::Redis(limiter) => limiter.failures(),
        }
    }

    async fn from_config(config: &Config) -> Result<Self, StartError> {
        match config.rate_limit_backend {
            crate::config::RateLimitBackend::Memory => Ok(Self::Memory(Arc::new(MemoryRateLimiter::new()))),
            crate::config::RateLimitBackend::Redis => {
                let url = config.redis_url.as_deref().unwrap_or_default();
                RedisRateLimiter::connect(url)
                    .await
                    .map(|limiter| Self::Redis(Arc::new(limiter)))
                    .map_err(|e| StartError(format!("AUTH_REDIS_URL: {e}")))
            }
        }
    }
}

impl convosphere_domain::ports::RateLimiter for Limiter {
    async fn check(
        &self,
        subject: convosphere_domain::ports::RateSubject,
        per_minute: u32,
    ) -> Result<convosphere_domain::ports::RateLimitDecision, convosphere_domain::InfraError> {
        match self {
            Limiter::Memory(limiter) => limiter.check(subject, per_minute).await,
            // Boxed: the Redis client's future is kilobytes, and every
            // authenticated request's future would carry (and move) that
            // space even with the in-memory limiter.
            Limiter::Redis(limiter) => Box::pin(limiter.check(subject, per_minute)).await,
        }
    }
}
