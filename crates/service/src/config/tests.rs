//! The configuration's rules, one bad value at a time, and property tests
//! that no value panics and every error names its variable.

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
    assert_eq!(config.webauthn_rp_id, "127.0.0.1");
}

#[test]
fn the_passkey_rp_id_is_the_public_host_or_a_domain_above_it() {
    let public = ("AUTH_PUBLIC_URL", "https://auth.example.com");
    let config = Config::from_sources(None, env(&[public])).unwrap();
    assert_eq!(config.webauthn_rp_id, "auth.example.com");
    let config = Config::from_sources(None, env(&[public, ("AUTH_WEBAUTHN_RP_ID", "example.com")])).unwrap();
    assert_eq!(config.webauthn_rp_id, "example.com");
    for other in ["ample.com", "evil.example", "auth.example.com.evil"] {
        let err = Config::from_sources(None, env(&[public, ("AUTH_WEBAUTHN_RP_ID", other)])).unwrap_err();
        assert!(err.0.starts_with("AUTH_WEBAUTHN_RP_ID"), "{err}");
    }
}

#[test]
fn a_bad_value_names_its_variable() {
    for (var, value) in [
        ("AUTH_ACCESS_TOKEN_TTL", "fifteen"),
        ("AUTH_RATE_LIMIT_BACKEND", "memcached"),
        ("AUTH_MAX_SESSIONS", "-1"),
        ("AUTH_BIND", "localhost"),
        ("AUTH_METRICS_BIND", "9090"),
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
