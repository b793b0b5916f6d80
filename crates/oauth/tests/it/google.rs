//! Google's adapter against a real OpenID Provider (oidc-provider).

use crate::{query, Attempt, REDIRECT_URI};
use convosphere_domain::oauth::Provider::Google;
use convosphere_oauth::testing::{Account, Browser, TestOidcProvider, CLIENT_ID, CLIENT_SECRET};
use convosphere_oauth::{Credentials, GoogleConfig, OAuthClients, OAuthConfig};

fn clients(issuer: &str) -> OAuthClients {
    OAuthClients::new(OAuthConfig {
        google: Some(GoogleConfig {
            credentials: Credentials {
                client_id: CLIENT_ID.into(),
                client_secret: CLIENT_SECRET.to_owned().into(),
            },
            issuer: issuer.into(),
        }),
        ..OAuthConfig::default()
    })
    .unwrap()
}

/// Logs `account` in at the provider; answers the code of the redirect.
async fn log_in(attempt: &Attempt, clients: &OAuthClients, account: &Account) -> String {
    let url = attempt.url(clients, Google).await.unwrap();
    let url = format!("{url}&login_hint={}", urlencode(&account.login_hint()));
    let back = Browser::new().follow_until(&url, |u| u.starts_with(REDIRECT_URI)).await;
    assert_eq!(query(&back, "state").as_deref(), Some(attempt.state.expose()));
    query(&back, "code").unwrap_or_else(|| panic!("no code in {back}"))
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn the_authorization_url_carries_state_pkce_s256_nonce_and_scopes() {
    let Some(provider) = TestOidcProvider::start(&[REDIRECT_URI]) else {
        return;
    };
    let clients = clients(&provider.issuer);
    let attempt = Attempt::new();
    let url = attempt.url(&clients, Google).await.unwrap();
    assert!(url.starts_with(&format!("{}/auth?", provider.issuer)), "{url}");
    assert_eq!(query(&url, "state").as_deref(), Some(attempt.state.expose()));
    assert_eq!(query(&url, "nonce").as_deref(), Some(attempt.nonce.as_str()));
    assert_eq!(query(&url, "code_challenge_method").as_deref(), Some("S256"));
    let challenge = query(&url, "code_challenge").unwrap();
    assert_eq!(challenge.len(), 43);
    assert_ne!(
        challenge,
        attempt.verifier.expose(),
        "the verifier never leaves the service"
    );
    assert_eq!(query(&url, "redirect_uri").as_deref(), Some(REDIRECT_URI));
    assert_eq!(query(&url, "response_type").as_deref(), Some("code"));
    let scopes = query(&url, "scope").unwrap();
    for scope in ["openid", "email", "profile"] {
        assert!(scopes.split(' ').any(|s| s == scope), "{scopes}");
    }
}

#[tokio::test]
async fn a_login_yields_the_validated_subject_and_verified_address() {
    let Some(provider) = TestOidcProvider::start(&[REDIRECT_URI]) else {
        return;
    };
    let clients = clients(&provider.issuer);
    let account = Account::new("ada", "ada@example.com");
    let attempt = Attempt::new();
    let code = log_in(&attempt, &clients, &account).await;
    let identity = attempt.identify(&clients, Google, &code).await.unwrap();
    assert_eq!(identity.subject, account.login_hint());
    assert_eq!(identity.email.as_deref(), Some("ada@example.com"));
    assert!(identity.email_verified);
    assert_eq!(identity.name.as_deref(), Some("Ada Lovelace"));

    // A code works once.
    let again = attempt.identify(&clients, Google, &code).await.unwrap_err();
    assert!(again.0.contains("refused the code"), "{again}");
}

#[tokio::test]
async fn an_address_only_at_the_userinfo_endpoint_is_found_there() {
    let Some(provider) = TestOidcProvider::start(&[REDIRECT_URI]) else {
        return;
    };
    let clients = clients(&provider.issuer);
    let account = Account {
        email_only_at_userinfo: true,
        ..Account::new("eve", "eve@example.com")
    };
    let attempt = Attempt::new();
    let code = log_in(&attempt, &clients, &account).await;
    let identity = attempt.identify(&clients, Google, &code).await.unwrap();
    assert_eq!(identity.email.as_deref(), Some("eve@example.com"));
    assert!(identity.email_verified);
}

#[tokio::test]
async fn an_unverified_address_is_reported_unverified() {
    let Some(provider) = TestOidcProvider::start(&[REDIRECT_URI]) else {
        return;
    };
    let clients = clients(&provider.issuer);
    let account = Account {
        verified: false,
        ..Account::new("bob", "bob@example.com")
    };
    let attempt = Attempt::new();
    let code = log_in(&attempt, &clients, &account).await;
    let identity = attempt.identify(&clients, Google, &code).await.unwrap();
    assert_eq!(identity.email.as_deref(), Some("bob@example.com"));
    assert!(!identity.email_verified);
    assert_eq!(identity.verified_email(), None);
}

#[tokio::test]
async fn an_id_token_with_another_nonce_is_refused() {
    let Some(provider) = TestOidcProvider::start(&[REDIRECT_URI]) else {
        return;
    };
    let clients = clients(&provider.issuer);
    let mut attempt = Attempt::new();
    let code = log_in(&attempt, &clients, &Account::new("ada", "ada@example.com")).await;
    attempt.nonce = "not-the-nonce-of-the-request".into();
    let error = attempt.identify(&clients, Google, &code).await.unwrap_err();
    assert!(
        error.0.contains("ID token is invalid") && error.0.to_lowercase().contains("nonce"),
        "{error}"
    );
}

#[tokio::test]
async fn a_code_without_its_pkce_verifier_is_refused() {
    let Some(provider) = TestOidcProvider::start(&[REDIRECT_URI]) else {
        return;
    };
    let clients = clients(&provider.issuer);
    let attempt = Attempt::new();
    let code = log_in(&attempt, &clients, &Account::new("ada", "ada@example.com")).await;
    let thief = Attempt {
        nonce: attempt.nonce.clone(),
        ..Attempt::new()
    };
    let error = thief.identify(&clients, Google, &code).await.unwrap_err();
    assert!(error.0.contains("invalid_grant"), "{error}");
}

#[tokio::test]
async fn an_unreachable_issuer_fails_cleanly() {
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let clients = clients(&issuer);
    let error = Attempt::new().url(&clients, Google).await.unwrap_err();
    assert!(error.0.contains("discovery"), "{error}");
}
