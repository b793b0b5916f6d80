//! The service's configuration: one typed struct, loaded once from an
//! optional TOML file and then the environment (which wins), validated at
//! start-up. A bad value names its variable.
//!
//! figment layers the file under the environment and deserializes both into one serde
//! struct of raw values, refusing unknown keys and naming the key of a value that does not
//! fit, so that only the typed checks of `Config::parse` are written by hand.

use convosphere_domain::{oauth::RedirectPolicy, PlanLimits};
use figment::{error::Kind, providers::Serialized, Figment};
use ipnet::IpNet;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration problem: one line that names the variable.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn bad(var: &str, why: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("{var}: {why}"))
}

fn ensure(ok: bool, var: &str, why: impl std::fmt::Display) -> Result<(), ConfigError> {
    ok.then_some(()).ok_or_else(|| bad(var, why))
}

fn starts(value: &str, prefixes: &[&str]) -> bool {
    prefixes.iter().any(|p| value.starts_with(p))
}

fn cidr(cidr: &String) -> Result<IpNet, ConfigError> {
    let net = cidr.parse().or_else(|_| cidr.parse::<IpAddr>().map(IpNet::from));
    let why = format!("{cidr:?} is not a CIDR such as 10.0.0.0/8");
    net.map_err(|_| bad("AUTH_TRUSTED_PROXIES", why))
}

/// Where rate-limit counters live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitBackend {
    /// In this process (one instance).
    Memory,
    /// In Redis (shared by every instance).
    Redis,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, for a terminal.
    Pretty,
    /// One JSON object per line, for collectors.
    Json,
}

/// Client id and secret of one OAuth provider, plus endpoint overrides.
#[derive(Debug, Clone, Default)]
pub struct OAuthProviderConfig {
    /// The client id; the provider is disabled without it.
    pub client_id: Option<String>,
    /// The client secret (redacted from `Debug`).
    pub client_secret: Option<SecretString>,
    /// Endpoint overrides (issuer, auth, token, API URLs).
    pub endpoints: BTreeMap<&'static str, String>,
}

/// Everything the service reads at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// `AUTH_BIND`
    pub bind: SocketAddr,
    /// `AUTH_METRICS_BIND`: a listener of its own for `/metrics` (then not on `bind`).
    pub metrics_bind: Option<SocketAddr>,
    /// `AUTH_PUBLIC_URL`, without a trailing slash.
    pub public_url: String,
    /// `AUTH_DATA_DIR`
    pub data_dir: PathBuf,
    /// `AUTH_DATABASE_URL`
    pub database_url: String,
    /// `AUTH_SMTP_URL`; `None` writes mail to the outbox.
    pub smtp_url: Option<String>,
    /// `AUTH_MAIL_FROM`
    pub mail_from: String,
    /// `AUTH_JWT_KEY_FILE`
    pub jwt_key_file: PathBuf,
    /// `AUTH_SECRET_KEY_FILE`
    pub secret_key_file: PathBuf,
    /// `AUTH_ACCESS_TOKEN_TTL`
    pub access_token_ttl: Duration,
    /// `AUTH_REFRESH_TOKEN_TTL`
    pub refresh_token_ttl: Duration,
    /// `AUTH_SESSION_IDLE_TIMEOUT`
    pub session_idle_timeout: Duration,
    /// `AUTH_MAX_SESSIONS`
    pub max_sessions: u32,
    /// `AUTH_EMAIL_VERIFY_TTL`
    pub email_verify_ttl: Duration,
    /// `AUTH_PASSWORD_RESET_TTL`
    pub password_reset_ttl: Duration,
    /// `AUTH_EMAIL_CHANGE_TTL`
    pub email_change_ttl: Duration,
    /// `AUTH_LOCKOUT_THRESHOLD`
    pub lockout_threshold: u32,
    /// `AUTH_LOCKOUT_DURATION`
    pub lockout_duration: Duration,
    /// `AUTH_AUDIT_RETENTION`: how long security events are kept.
    pub audit_retention: Duration,
    /// `AUTH_USAGE_RETENTION`: how long usage counts are kept.
    pub usage_retention: Duration,
    /// `AUTH_REAUTH_WINDOW`: how long after a sign-in a session may do sensitive actions.
    pub reauth_window: Duration,
    /// `AUTH_WEBAUTHN_RP_ID`: the relying-party id of passkeys (default: the public URL's host).
    pub webauthn_rp_id: String,
    /// `AUTH_RATE_LIMIT_{FREE,STARTER,BUSINESS,PRO}`
    pub rate_limits: PlanLimits,
    /// `AUTH_IP_RATE_LIMIT`
    pub ip_rate_limit: u32,
    /// `AUTH_TRUSTED_PROXIES`
    pub trusted_proxies: Vec<IpNet>,
    /// `AUTH_RATE_LIMIT_BACKEND`
    pub rate_limit_backend: RateLimitBackend,
    /// `AUTH_REDIS_URL`
    pub redis_url: Option<String>,
    /// `AUTH_OAUTH_GOOGLE_*`
    pub oauth_google: OAuthProviderConfig,
    /// `AUTH_OAUTH_GITHUB_*`
    pub oauth_github: OAuthProviderConfig,
    /// `AUTH_OAUTH_FACEBOOK_*`
    pub oauth_facebook: OAuthProviderConfig,
    /// `AUTH_OAUTH_REDIRECT_ALLOWLIST`
    pub oauth_redirect_allowlist: Vec<String>,
    /// `AUTH_LOG_FORMAT`
    pub log_format: LogFormat,
}

/// Declares the raw values, by file key, each with its variable's name without
/// `AUTH_`, and `KNOWN`, the variables themselves.
macro_rules! raw {
    ($($key:ident $var:ident,)*) => {
        /// The values as written, by file key, before the typed checks.
        #[derive(Default, Deserialize, Serialize)]
        #[serde(default, deny_unknown_fields)]
        struct Raw {
            $(#[serde(deserialize_with = "text", skip_serializing_if = "Option::is_none")] $key: Option<String>,)*
        }

        impl Raw {
            /// The value of a variable; a blank one is unset.
            fn get(&self, var: &str) -> Option<&str> {
                let value = match var { $(concat!("AUTH_", stringify!($var)) => self.$key.as_deref(),)* _ => None };
                value.filter(|v| !v.trim().is_empty())
            }
        }

        /// Every variable the service knows, so that a config file's unknown key is an error.
        const KNOWN: &[&str] = &[$(concat!("AUTH_", stringify!($var))),*];
    };
}

raw! {
    bind BIND, public_url PUBLIC_URL, data_dir DATA_DIR, database_url DATABASE_URL, smtp_url SMTP_URL,
    mail_from MAIL_FROM, jwt_key_file JWT_KEY_FILE, secret_key_file SECRET_KEY_FILE,
    access_token_ttl ACCESS_TOKEN_TTL, refresh_token_ttl REFRESH_TOKEN_TTL, session_idle_timeout SESSION_IDLE_TIMEOUT,
    max_sessions MAX_SESSIONS, email_verify_ttl EMAIL_VERIFY_TTL, password_reset_ttl PASSWORD_RESET_TTL,
    email_change_ttl EMAIL_CHANGE_TTL,
    lockout_threshold LOCKOUT_THRESHOLD, lockout_duration LOCKOUT_DURATION, rate_limit_free RATE_LIMIT_FREE,
    rate_limit_starter RATE_LIMIT_STARTER, rate_limit_business RATE_LIMIT_BUSINESS, rate_limit_pro RATE_LIMIT_PRO,
    ip_rate_limit IP_RATE_LIMIT, trusted_proxies TRUSTED_PROXIES, rate_limit_backend RATE_LIMIT_BACKEND,
    redis_url REDIS_URL, oauth_google_client_id OAUTH_GOOGLE_CLIENT_ID,
    oauth_google_client_secret OAUTH_GOOGLE_CLIENT_SECRET, oauth_google_issuer OAUTH_GOOGLE_ISSUER,
    oauth_github_client_id OAUTH_GITHUB_CLIENT_ID, oauth_github_client_secret OAUTH_GITHUB_CLIENT_SECRET,
    oauth_github_auth_url OAUTH_GITHUB_AUTH_URL, oauth_github_token_url OAUTH_GITHUB_TOKEN_URL,
    oauth_github_api_url OAUTH_GITHUB_API_URL, oauth_facebook_client_id OAUTH_FACEBOOK_CLIENT_ID,
    oauth_facebook_client_secret OAUTH_FACEBOOK_CLIENT_SECRET, oauth_facebook_auth_url OAUTH_FACEBOOK_AUTH_URL,
    oauth_facebook_token_url OAUTH_FACEBOOK_TOKEN_URL, oauth_facebook_api_url OAUTH_FACEBOOK_API_URL,
    oauth_redirect_allowlist OAUTH_REDIRECT_ALLOWLIST, log_format LOG_FORMAT, audit_retention AUDIT_RETENTION,
    reauth_window REAUTH_WINDOW, metrics_bind METRICS_BIND, usage_retention USAGE_RETENTION,
    webauthn_rp_id WEBAUTHN_RP_ID,
}

/// A value as the variable would spell it: a file's number as digits, its list
/// joined by commas; any other TOML type is refused.
fn text<'de, D: serde::Deserializer<'de>>(value: D) -> Result<Option<String>, D::Error> {
    use serde::de::Error as _;
    let item = |item: &toml::Value| item.as_str().map_or_else(|| item.to_string(), String::from);
    Ok(Some(match toml::Value::deserialize(value)? {
        toml::Value::String(s) => s,
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Array(items) => items.iter().map(item).collect::<Vec<_>>().join(","),
        other => return Err(D::Error::custom(format!("{other} is not a string, number or list"))),
    }))
}

/// figment's error as one line naming its variable (or the file, for an unknown key).
fn named(error: figment::Error, file: &Path) -> ConfigError {
    match (&error.kind, error.path.first()) {
        (Kind::UnknownField(key, _), _) => bad("--config", format!("{}: unknown key {key:?}", file.display())),
        (kind, Some(key)) => bad(&format!("AUTH_{}", key.to_uppercase()), kind),
        (kind, None) => bad("--config", format!("{}: {kind}", file.display())),
    }
}

impl Raw {
    fn string(&self, var: &str, default: &str) -> String {
        self.get(var).unwrap_or(default).trim().to_owned()
    }

    fn optional(&self, var: &str) -> Option<String> {
        self.get(var).map(|v| v.trim().to_owned())
    }

    fn duration(&self, var: &str, default: &str) -> Result<Duration, ConfigError> {
        let raw = self.get(var).unwrap_or(default).trim();
        let value = humantime::parse_duration(raw)
            .map_err(|e| bad(var, format!("{raw:?} is not a duration such as 900s, 15m or 7d ({e})")))?;
        ensure(!value.is_zero(), var, "must be longer than zero").map(|()| value)
    }

    fn number(&self, var: &str, default: u32) -> Result<u32, ConfigError> {
        let Some(raw) = self.get(var) else { return Ok(default) };
        let number = raw.trim().parse::<u32>().ok().filter(|n| *n > 0);
        number.ok_or_else(|| bad(var, format!("{raw:?} is not a whole number above zero")))
    }

    fn list(&self, var: &str) -> Vec<String> {
        let items = self.get(var).unwrap_or_default().split(',').map(str::trim);
        items.filter(|s| !s.is_empty()).map(String::from).collect()
    }

    /// One of two words (`memory|redis`, `pretty|json`).
    fn choice<T: Copy>(&self, var: &str, default: &str, choices: [(&str, T); 2]) -> Result<T, ConfigError> {
        let value = self.string(var, default);
        let found = choices.iter().find(|(name, _)| *name == value);
        let why = format!("{value:?} is not {} or {}", choices[0].0, choices[1].0);
        found.map(|(_, choice)| *choice).ok_or_else(|| bad(var, why))
    }

    /// An optional URL that must start with one of `schemes`.
    fn url(&self, var: &str, schemes: &[&str], why: impl Fn(&str) -> String) -> Result<Option<String>, ConfigError> {
        let value = self.optional(var);
        match &value {
            Some(url) if !starts(url, schemes) => Err(bad(var, why(url))),
            _ => Ok(value),
        }
    }

    /// `endpoints` in alphabetical order, so that the first bad one is named.
    fn oauth(&self, provider: &str, endpoints: &[&'static str]) -> Result<OAuthProviderConfig, ConfigError> {
        let var = |suffix: &str| format!("AUTH_OAUTH_{provider}_{suffix}");
        let (client_id, client_secret) = (self.optional(&var("CLIENT_ID")), self.optional(&var("CLIENT_SECRET")));
        let why = format!("is required when {} is set", var("CLIENT_ID"));
        let paired = client_id.is_none() || client_secret.is_some();
        ensure(paired, &var("CLIENT_SECRET"), why)?;
        let mut config = OAuthProviderConfig {
            client_id,
            client_secret: client_secret.map(SecretString::from),
            ..Default::default()
        };
        let why = |url: &str| format!("{url:?} is not an http(s) URL");
        for name in endpoints {
            if let Some(url) = self.url(&var(name), &["https://", "http://"], why)? {
                config.endpoints.insert(*name, url);
            }
        }
        Ok(config)
    }
}

impl Config {
    /// Loads the file (if given), then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::from_sources(file, std::env::vars())
    }

    /// Loads the file (if given), then `env` (for tests).
    pub fn from_sources(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let figment = file.map_or_else(|| Ok(Figment::new()), read_file)?;
        let env = env.into_iter().filter(|(k, _)| KNOWN.contains(&k.as_str()));
        let env: BTreeMap<_, _> = env.map(|(k, v)| (k["AUTH_".len()..].to_lowercase(), v)).collect();
        let raw = figment.merge(Serialized::defaults(env)).extract();
        Self::parse(&raw.map_err(|e| named(e, Path::new("-")))?)
    }

    fn parse(src: &Raw) -> Result<Self, ConfigError> {
        let bind_raw = src.string("AUTH_BIND", "127.0.0.1:8080");
        let why = format!("{bind_raw:?} is not an address such as 127.0.0.1:8080");
        let bind = bind_raw.parse().map_err(|_| bad("AUTH_BIND", why))?;
        let metrics_bind = match src.optional("AUTH_METRICS_BIND") {
            None => None,
            Some(raw) => {
                let why = format!("{raw:?} is not an address such as 127.0.0.1:9090");
                Some(raw.parse().map_err(|_| bad("AUTH_METRICS_BIND", why))?)
            }
        };
        let public_url = src.string("AUTH_PUBLIC_URL", "http://127.0.0.1:8080");
        let public_url = public_url.trim_end_matches('/').to_owned();
        let base = starts(&public_url, &["http://", "https://"]) && !public_url.contains(['?', '#']);
        let why = format!("{public_url:?} is not an http(s) base URL");
        ensure(base, "AUTH_PUBLIC_URL", why)?;
        let host = url::Url::parse(&public_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned));
        let host = host.ok_or_else(|| bad("AUTH_PUBLIC_URL", format!("{public_url:?} has no host")))?;
        let webauthn_rp_id = src.string("AUTH_WEBAUTHN_RP_ID", &host);
        let suffix = host == webauthn_rp_id || host.ends_with(&format!(".{webauthn_rp_id}"));
        let why = format!("{webauthn_rp_id:?} is neither the host of AUTH_PUBLIC_URL nor a domain it is under");
        ensure(suffix, "AUTH_WEBAUTHN_RP_ID", why)?;
        let data_dir = PathBuf::from(src.string("AUTH_DATA_DIR", "./data"));
        let default_db = format!("sqlite://{}", data_dir.join("auth.db").display());
        let database_url = src.string("AUTH_DATABASE_URL", &default_db);
        let db = starts(&database_url, &["sqlite://", "postgres://", "postgresql://"]);
        ensure(db, "AUTH_DATABASE_URL", "expected sqlite://PATH or postgres://…")?;
        let why = |_: &str| "expected smtp://host:port or smtps://user:pass@host:465".to_owned();
        let smtp_url = src.url("AUTH_SMTP_URL", &["smtp://", "smtps://"], why)?;
        let backends = [("memory", RateLimitBackend::Memory), ("redis", RateLimitBackend::Redis)];
        let rate_limit_backend = src.choice("AUTH_RATE_LIMIT_BACKEND", "memory", backends)?;
        let redis_url = src.optional("AUTH_REDIS_URL");
        let redis = rate_limit_backend == RateLimitBackend::Memory || redis_url.is_some();
        let why = "is required when AUTH_RATE_LIMIT_BACKEND is redis";
        ensure(redis, "AUTH_REDIS_URL", why)?;
        let proxies = src.list("AUTH_TRUSTED_PROXIES");
        let trusted_proxies = proxies.iter().map(cidr).collect::<Result<_, _>>()?;
        let oauth_redirect_allowlist = src.list("AUTH_OAUTH_REDIRECT_ALLOWLIST");
        // Parsed as the redirect policy will parse them: scheme, host, port,
        // path. The public URL alone first, so that its error names it.
        RedirectPolicy::new(&public_url, &[]).map_err(|e| bad("AUTH_PUBLIC_URL", e))?;
        RedirectPolicy::new(&public_url, &oauth_redirect_allowlist)
            .map_err(|e| bad("AUTH_OAUTH_REDIRECT_ALLOWLIST", e))?;
        let oauth_google = src.oauth("GOOGLE", &["ISSUER"])?;
        let oauth_github = src.oauth("GITHUB", &["API_URL", "AUTH_URL", "TOKEN_URL"])?;
        let oauth_facebook = src.oauth("FACEBOOK", &["API_URL", "AUTH_URL", "TOKEN_URL"])?;
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
        let formats = [("pretty", LogFormat::Pretty), ("json", LogFormat::Json)];
        let log_format = src.choice("AUTH_LOG_FORMAT", if terminal { "pretty" } else { "json" }, formats)?;
        let file = |var: &str, default: &str| src.optional(var).map_or_else(|| data_dir.join(default), PathBuf::from);
        let defaults = PlanLimits::default();
        Ok(Self {
            bind,
            metrics_bind,
            jwt_key_file: file("AUTH_JWT_KEY_FILE", "jwt-signing-key.pem"),
            secret_key_file: file("AUTH_SECRET_KEY_FILE", "secret.key"),
            public_url,
            database_url,
            smtp_url,
            mail_from: src.string("AUTH_MAIL_FROM", "Convosphere AI <no-reply@localhost>"),
            access_token_ttl: src.duration("AUTH_ACCESS_TOKEN_TTL", "15m")?,
            refresh_token_ttl: src.duration("AUTH_REFRESH_TOKEN_TTL", "7d")?,
            session_idle_timeout: src.duration("AUTH_SESSION_IDLE_TIMEOUT", "24h")?,
            max_sessions: src.number("AUTH_MAX_SESSIONS", 5)?,
            email_verify_ttl: src.duration("AUTH_EMAIL_VERIFY_TTL", "24h")?,
            password_reset_ttl: src.duration("AUTH_PASSWORD_RESET_TTL", "1h")?,
            email_change_ttl: src.duration("AUTH_EMAIL_CHANGE_TTL", "24h")?,
            lockout_threshold: src.number("AUTH_LOCKOUT_THRESHOLD", 10)?,
            lockout_duration: src.duration("AUTH_LOCKOUT_DURATION", "15m")?,
            audit_retention: src.duration("AUTH_AUDIT_RETENTION", "365d")?,
            usage_retention: src.duration("AUTH_USAGE_RETENTION", "400d")?,
            reauth_window: src.duration("AUTH_REAUTH_WINDOW", "10m")?,
            webauthn_rp_id,
            rate_limits: PlanLimits {
                free: src.number("AUTH_RATE_LIMIT_FREE", defaults.free)?,
                starter: src.number("AUTH_RATE_LIMIT_STARTER", defaults.starter)?,
                business: src.number("AUTH_RATE_LIMIT_BUSINESS", defaults.business)?,
                pro: src.number("AUTH_RATE_LIMIT_PRO", defaults.pro)?,
            },
            ip_rate_limit: src.number("AUTH_IP_RATE_LIMIT", 60)?,
            trusted_proxies,
            rate_limit_backend,
            redis_url,
            oauth_google,
            oauth_github,
            oauth_facebook,
            oauth_redirect_allowlist,
            log_format,
            data_dir,
        })
    }

    /// Whether cookies must be `Secure` (the public URL is https).
    pub fn is_https(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    /// The OAuth providers with a client id (`google`, `github`,
    /// `facebook`, in that order): the login page offers these.
    pub fn oauth_providers(&self) -> Vec<&'static str> {
        [
            ("google", &self.oauth_google),
            ("github", &self.oauth_github),
            ("facebook", &self.oauth_facebook),
        ]
        .into_iter()
        .filter(|(_, provider)| provider.client_id.is_some())
        .map(|(name, _)| name)
        .collect()
    }
}

/// A TOML syntax error on one line (toml's own message quotes the
/// offending line under a caret, over several lines).
fn toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().split_whitespace().collect::<Vec<_>>().join(" ");
    let Some(span) = error.span() else { return message };
    let mut start = span.start.min(text.len());
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or_default().chars().count() + 1;
    format!("line {line}, column {column}: {message}")
}

/// Reads a TOML file whose keys are the variables' names without `AUTH_`,
/// in lower case (`public_url = "https://auth.example.com"`; any case is
/// taken). toml parses it, not figment's provider, which would skip a missing
/// file and lose a syntax error's position. Each key is checked on its own, in
/// the file's order, so that every value must fit, even one the environment
/// overrides, and the first bad key is named.
fn read_file(path: &Path) -> Result<Figment, ConfigError> {
    let at = |why: String| bad("--config", format!("{}: {why}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| at(e.to_string()))?;
    let table: toml::Table = text.parse().map_err(|e| at(toml_error(&text, &e)))?;
    let mut figment = Figment::new();
    for (key, value) in table {
        let key = match key.to_uppercase() {
            var if KNOWN.contains(&format!("AUTH_{var}").as_str()) => var.to_lowercase(),
            _ => key,
        };
        let raw: Raw = Figment::from(Serialized::defaults(BTreeMap::from([(key, value)])))
            .extract()
            .map_err(|e| named(e, path))?;
        figment = figment.merge(Serialized::defaults(raw));
    }
    Ok(figment)
}

#[cfg(test)]
mod tests;
