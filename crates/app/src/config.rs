//! The service's configuration: one typed struct, loaded once from an
//! optional TOML file and then the environment (which wins), validated at
//! start-up. A bad value names its variable.

use convosphere_domain::PlanLimits;
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration problem: one line that names the variable.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn bad(var: &str, why: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("{var}: {why}"))
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
#[derive(Clone, Default)]
pub struct OAuthProviderConfig {
    /// The client id; the provider is disabled without it.
    pub client_id: Option<String>,
    /// The client secret.
    pub client_secret: Option<String>,
    /// Endpoint overrides (issuer, auth, token, API URLs).
    pub endpoints: BTreeMap<&'static str, String>,
}

impl std::fmt::Debug for OAuthProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthProviderConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "***"))
            .field("endpoints", &self.endpoints)
            .finish()
    }
}

/// Everything the service reads at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// `AUTH_BIND`
    pub bind: SocketAddr,
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
    /// `AUTH_LOCKOUT_THRESHOLD`
    pub lockout_threshold: u32,
    /// `AUTH_LOCKOUT_DURATION`
    pub lockout_duration: Duration,
    /// `AUTH_AUDIT_RETENTION`: how long security events are kept.
    pub audit_retention: Duration,
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

/// Every variable the service knows, so that a config file's unknown key is an error.
const KNOWN: &[&str] = &[
    "AUTH_BIND",
    "AUTH_PUBLIC_URL",
    "AUTH_DATA_DIR",
    "AUTH_DATABASE_URL",
    "AUTH_SMTP_URL",
    "AUTH_MAIL_FROM",
    "AUTH_JWT_KEY_FILE",
    "AUTH_SECRET_KEY_FILE",
    "AUTH_ACCESS_TOKEN_TTL",
    "AUTH_REFRESH_TOKEN_TTL",
    "AUTH_SESSION_IDLE_TIMEOUT",
    "AUTH_MAX_SESSIONS",
    "AUTH_EMAIL_VERIFY_TTL",
    "AUTH_PASSWORD_RESET_TTL",
    "AUTH_LOCKOUT_THRESHOLD",
    "AUTH_LOCKOUT_DURATION",
    "AUTH_RATE_LIMIT_FREE",
    "AUTH_RATE_LIMIT_STARTER",
    "AUTH_RATE_LIMIT_BUSINESS",
    "AUTH_RATE_LIMIT_PRO",
    "AUTH_IP_RATE_LIMIT",
    "AUTH_TRUSTED_PROXIES",
    "AUTH_RATE_LIMIT_BACKEND",
    "AUTH_REDIS_URL",
    "AUTH_OAUTH_GOOGLE_CLIENT_ID",
    "AUTH_OAUTH_GOOGLE_CLIENT_SECRET",
    "AUTH_OAUTH_GOOGLE_ISSUER",
    "AUTH_OAUTH_GITHUB_CLIENT_ID",
    "AUTH_OAUTH_GITHUB_CLIENT_SECRET",
    "AUTH_OAUTH_GITHUB_AUTH_URL",
    "AUTH_OAUTH_GITHUB_TOKEN_URL",
    "AUTH_OAUTH_GITHUB_API_URL",
    "AUTH_OAUTH_FACEBOOK_CLIENT_ID",
    "AUTH_OAUTH_FACEBOOK_CLIENT_SECRET",
    "AUTH_OAUTH_FACEBOOK_AUTH_URL",
    "AUTH_OAUTH_FACEBOOK_TOKEN_URL",
    "AUTH_OAUTH_FACEBOOK_API_URL",
    "AUTH_OAUTH_REDIRECT_ALLOWLIST",
    "AUTH_LOG_FORMAT",
    "AUTH_AUDIT_RETENTION",
];

/// Raw values by variable name, before parsing.
struct Source(BTreeMap<String, String>);

impl Source {
    fn get(&self, var: &str) -> Option<&str> {
        self.0.get(var).map(String::as_str).filter(|v| !v.trim().is_empty())
    }

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
        if value.is_zero() {
            return Err(bad(var, "must be longer than zero"));
        }
        Ok(value)
    }

    fn number(&self, var: &str, default: u32) -> Result<u32, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(raw) => match raw.trim().parse::<u32>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(bad(var, format!("{raw:?} is not a whole number above zero"))),
            },
        }
    }

    fn list(&self, var: &str) -> Vec<String> {
        self.get(var)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn oauth(&self, provider: &str, endpoints: &[&'static str]) -> Result<OAuthProviderConfig, ConfigError> {
        let var = |suffix: &str| format!("AUTH_OAUTH_{provider}_{suffix}");
        let config = OAuthProviderConfig {
            client_id: self.optional(&var("CLIENT_ID")),
            client_secret: self.optional(&var("CLIENT_SECRET")),
            endpoints: endpoints
                .iter()
                .filter_map(|name| self.optional(&var(name)).map(|value| (*name, value)))
                .collect(),
        };
        if config.client_id.is_some() && config.client_secret.is_none() {
            return Err(bad(
                &var("CLIENT_SECRET"),
                format!("is required when {} is set", var("CLIENT_ID")),
            ));
        }
        for (name, value) in &config.endpoints {
            if !(value.starts_with("https://") || value.starts_with("http://")) {
                return Err(bad(&var(name), format!("{value:?} is not an http(s) URL")));
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
        let mut values = BTreeMap::new();
        if let Some(path) = file {
            values = read_file(path)?;
        }
        values.extend(env.into_iter().filter(|(k, _)| KNOWN.contains(&k.as_str())));
        Self::parse(&Source(values))
    }

    fn parse(src: &Source) -> Result<Self, ConfigError> {
        let bind_raw = src.string("AUTH_BIND", "127.0.0.1:8080");
        let bind = bind_raw.parse().map_err(|_| {
            bad(
                "AUTH_BIND",
                format!("{bind_raw:?} is not an address such as 127.0.0.1:8080"),
            )
        })?;
        let public_url = src
            .string("AUTH_PUBLIC_URL", "http://127.0.0.1:8080")
            .trim_end_matches('/')
            .to_owned();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) || public_url.contains(['?', '#'])
        {
            return Err(bad(
                "AUTH_PUBLIC_URL",
                format!("{public_url:?} is not an http(s) base URL"),
            ));
        }
        let data_dir = PathBuf::from(src.string("AUTH_DATA_DIR", "./data"));
        let default_db = format!("sqlite://{}", data_dir.join("auth.db").display());
        let database_url = src.string("AUTH_DATABASE_URL", &default_db);
        if !["sqlite://", "postgres://", "postgresql://"]
            .iter()
            .any(|p| database_url.starts_with(p))
        {
            return Err(bad("AUTH_DATABASE_URL", "expected sqlite://PATH or postgres://…"));
        }
        let smtp_url = src.optional("AUTH_SMTP_URL");
        if let Some(url) = &smtp_url {
            if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
                return Err(bad(
                    "AUTH_SMTP_URL",
                    "expected smtp://host:port or smtps://user:pass@host:465",
                ));
            }
        }
        let rate_limit_backend = match src.string("AUTH_RATE_LIMIT_BACKEND", "memory").as_str() {
            "memory" => RateLimitBackend::Memory,
            "redis" => RateLimitBackend::Redis,
            other => {
                return Err(bad(
                    "AUTH_RATE_LIMIT_BACKEND",
                    format!("{other:?} is not memory or redis"),
                ))
            }
        };
        let redis_url = src.optional("AUTH_REDIS_URL");
        if rate_limit_backend == RateLimitBackend::Redis && redis_url.is_none() {
            return Err(bad(
                "AUTH_REDIS_URL",
                "is required when AUTH_RATE_LIMIT_BACKEND is redis",
            ));
        }
        let trusted_proxies = src
            .list("AUTH_TRUSTED_PROXIES")
            .iter()
            .map(|cidr| {
                cidr.parse::<IpNet>()
                    .or_else(|_| cidr.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        bad(
                            "AUTH_TRUSTED_PROXIES",
                            format!("{cidr:?} is not a CIDR such as 10.0.0.0/8"),
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        let oauth_redirect_allowlist = src.list("AUTH_OAUTH_REDIRECT_ALLOWLIST");
        // Parsed as the redirect policy will parse them: scheme, host, port,
        // path. The public URL alone first, so that its error names it.
        convosphere_domain::oauth::RedirectPolicy::new(&public_url, &[]).map_err(|e| bad("AUTH_PUBLIC_URL", e))?;
        convosphere_domain::oauth::RedirectPolicy::new(&public_url, &oauth_redirect_allowlist)
            .map_err(|e| bad("AUTH_OAUTH_REDIRECT_ALLOWLIST", e))?;
        let oauth_google = src.oauth("GOOGLE", &["ISSUER"])?;
        let oauth_github = src.oauth("GITHUB", &["AUTH_URL", "TOKEN_URL", "API_URL"])?;
        let oauth_facebook = src.oauth("FACEBOOK", &["AUTH_URL", "TOKEN_URL", "API_URL"])?;
        let log_format = match src.optional("AUTH_LOG_FORMAT").as_deref() {
            None => {
                use std::io::IsTerminal;
                if std::io::stdout().is_terminal() {
                    LogFormat::Pretty
                } else {
                    LogFormat::Json
                }
            }
            Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => return Err(bad("AUTH_LOG_FORMAT", format!("{other:?} is not pretty or json"))),
        };
        let defaults = PlanLimits::default();
        Ok(Self {
            bind,
            jwt_key_file: src
                .optional("AUTH_JWT_KEY_FILE")
                .map_or_else(|| data_dir.join("jwt-signing-key.pem"), PathBuf::from),
            secret_key_file: src
                .optional("AUTH_SECRET_KEY_FILE")
                .map_or_else(|| data_dir.join("secret.key"), PathBuf::from),
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
            lockout_threshold: src.number("AUTH_LOCKOUT_THRESHOLD", 10)?,
            lockout_duration: src.duration("AUTH_LOCKOUT_DURATION", "15m")?,
            audit_retention: src.duration("AUTH_AUDIT_RETENTION", "365d")?,
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
    match error.span() {
        Some(span) => {
            let mut start = span.start.min(text.len());
            while !text.is_char_boundary(start) {
                start -= 1;
            }
            let before = &text[..start];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or_default().chars().count() + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

/// Reads a TOML file whose keys are the variables' names without `AUTH_`,
/// in lower case (`public_url = "https://auth.example.com"`).
fn read_file(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| bad("--config", format!("{}: {e}", path.display())))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| bad("--config", format!("{}: {}", path.display(), toml_error(&text, &e))))?;
    let mut values = BTreeMap::new();
    for (key, value) in table {
        let var = format!("AUTH_{}", key.to_uppercase());
        if !KNOWN.contains(&var.as_str()) {
            return Err(bad("--config", format!("{}: unknown key {key:?}", path.display())));
        }
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|item| item.as_str().map(String::from).unwrap_or_else(|| item.to_string()))
                .collect::<Vec<_>>()
                .join(","),
            other => return Err(bad(&var, format!("{other} is not a string, number or list"))),
        };
        values.insert(var, text);
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_need_nothing() {
        let config = Config::from_sources(None, env(&[])).unwrap();
        assert_eq!(config.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(config.database_url, "sqlite://./data/auth.db");
        assert_eq!(config.access_token_ttl, Duration::from_secs(900));
        assert_eq!(config.refresh_token_ttl, Duration::from_secs(7 * 86_400));
        assert_eq!(config.max_sessions, 5);
        assert_eq!(config.rate_limits, PlanLimits::default());
        assert_eq!(config.jwt_key_file, PathBuf::from("./data/jwt-signing-key.pem"));
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        for (var, value) in [
            ("AUTH_ACCESS_TOKEN_TTL", "fifteen"),
            ("AUTH_RATE_LIMIT_BACKEND", "memcached"),
            ("AUTH_MAX_SESSIONS", "-1"),
            ("AUTH_BIND", "localhost"),
            ("AUTH_TRUSTED_PROXIES", "10.0.0.0/33"),
            ("AUTH_DATABASE_URL", "mysql://x"),
        ] {
            let err = Config::from_sources(None, env(&[(var, value)])).unwrap_err();
            assert!(err.0.starts_with(var), "{err}");
        }
        for (var, value) in [
            (
                "AUTH_OAUTH_REDIRECT_ALLOWLIST",
                "https://app.example.com,app.example.com",
            ),
            ("AUTH_OAUTH_REDIRECT_ALLOWLIST", "https://user@app.example.com"),
            ("AUTH_OAUTH_GITHUB_API_URL", "api.github.example"),
        ] {
            let err = Config::from_sources(None, env(&[(var, value)])).unwrap_err();
            assert!(err.0.starts_with(var), "{err}");
        }
        let err = Config::from_sources(None, env(&[("AUTH_OAUTH_GOOGLE_CLIENT_ID", "id")])).unwrap_err();
        assert!(err.0.starts_with("AUTH_OAUTH_GOOGLE_CLIENT_SECRET"), "{err}");
        let err = Config::from_sources(None, env(&[("AUTH_RATE_LIMIT_BACKEND", "redis")])).unwrap_err();
        assert!(err.0.starts_with("AUTH_REDIS_URL"), "{err}");
    }

    #[test]
    fn the_environment_overrides_the_file_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.toml");
        std::fs::write(
            &path,
            "public_url = \"https://auth.example.com/\"\nmax_sessions = 3\naccess_token_ttl = \"5m\"\n",
        )
        .unwrap();
        let config = Config::from_sources(Some(&path), env(&[("AUTH_MAX_SESSIONS", "7")])).unwrap();
        assert_eq!(config.public_url, "https://auth.example.com");
        assert_eq!(config.max_sessions, 7);
        assert_eq!(config.access_token_ttl, Duration::from_secs(300));
        assert!(config.is_https());

        std::fs::write(&path, "publik_url = \"x\"\n").unwrap();
        assert!(Config::from_sources(Some(&path), env(&[]))
            .unwrap_err()
            .0
            .contains("unknown key"));
    }

    #[test]
    fn a_broken_file_is_reported_on_one_line_with_its_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.toml");
        std::fs::write(&path, "max_sessions = 3\npublic_url = https://x\n").unwrap();
        let err = Config::from_sources(Some(&path), env(&[])).unwrap_err();
        assert!(err.0.starts_with("--config: "), "{err}");
        assert!(err.0.contains("line 2, column 14"), "{err}");
        assert!(!err.0.contains('\n'), "{err}");
    }

    /// Property tests: configuration comes from operators, files and
    /// orchestrators, and a typo must give one line naming the variable.
    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Values near and far from valid ones: durations with any unit and
        /// huge numbers, signed and overflowing integers, addresses, URLs,
        /// CIDR lists, and arbitrary text.
        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                "[0-9]{1,30}(ns|us|ms|s|m|h|d|w|M|y|years|)",
                "-?[0-9]{1,25}",
                "[0-9 ]{0,4}[a-z]{0,6}",
                "(http|https|sqlite|postgres|smtp|smtps|redis|ftp)://[\\PC]{0,30}",
                "[0-9a-f:.]{0,20}(/[0-9]{1,3})?(,[0-9.]{0,15}(/[0-9]{1,3})?){0,3}",
                "(memory|redis|pretty|json|MEMORY| json)",
                "[ \t]{0,3}",
            ]
        }

        /// A known variable (never the file flag).
        fn variable() -> impl Strategy<Value = &'static str> {
            proptest::sample::select(KNOWN.to_vec())
        }

        /// The variable an OAuth client id or secret needs with it.
        fn sibling(var: &str) -> Option<String> {
            var.strip_suffix("_CLIENT_ID")
                .map(|p| format!("{p}_CLIENT_SECRET"))
                .or_else(|| var.strip_suffix("_CLIENT_SECRET").map(|p| format!("{p}_CLIENT_ID")))
        }

        /// The variable an error names: its first word, before the colon.
        fn named(err: &ConfigError) -> &str {
            err.0.split(':').next().unwrap_or_default()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn one_arbitrary_value_never_panics_and_an_error_names_it(var in variable(), value in value()) {
                if let Err(err) = Config::from_sources(None, vec![(var.to_owned(), value.clone())]) {
                    // The one rule across variables: the redis backend needs a URL.
                    // The rules across variables: the redis backend needs a URL,
                    // and an OAuth client id its secret (and the other way round).
                    let expected = if var == "AUTH_RATE_LIMIT_BACKEND" && value.trim() == "redis" {
                        "AUTH_REDIS_URL".to_owned()
                    } else {
                        var.to_owned()
                    };
                    let name = named(&err);
                    prop_assert!(name == expected || sibling(var).as_deref() == Some(name), "{}", err);
                    prop_assert!(!err.0.contains('\n'), "not one line: {}", err);
                }
            }

            #[test]
            fn many_arbitrary_values_never_panic_and_an_error_names_one_of_them(
                pairs in proptest::collection::vec((variable(), value()), 1..8),
            ) {
                let env: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
                if let Err(err) = Config::from_sources(None, env) {
                    let name = named(&err);
                    prop_assert!(
                        name == "AUTH_REDIS_URL"
                            || pairs.iter().any(|(k, _)| *k == name || sibling(k).as_deref() == Some(name)),
                        "{} names none of {:?}", err, pairs.iter().map(|(k, _)| k).collect::<Vec<_>>()
                    );
                }
            }

            #[test]
            fn an_arbitrary_config_file_never_panics(
                text in prop_oneof![
                    any::<String>(),
                    proptest::collection::vec(
                        (variable(), value(), 0..4usize).prop_map(|(var, value, kind)| {
                            let key = var.trim_start_matches("AUTH_").to_lowercase();
                            match kind {
                                0 => format!("{key} = {value:?}"),
                                1 => format!("{key} = {}", value.len()),
                                2 => format!("{key} = [{value:?}, 1]"),
                                _ => format!("{key} = {value}"),
                            }
                        }),
                        0..6,
                    )
                    .prop_map(|lines| lines.join("\n")),
                ],
            ) {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("auth.toml");
                std::fs::write(&path, &text).unwrap();
                if let Err(err) = Config::from_sources(Some(&path), Vec::<(String, String)>::new()) {
                    let name = named(&err);
                    prop_assert!(name == "--config" || KNOWN.contains(&name), "{}", err);
                    prop_assert!(!err.0.contains('\n'), "not one line: {}", err);
                }
            }
        }
    }
}
