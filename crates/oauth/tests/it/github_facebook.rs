//! GitHub's and Facebook's adapters against a local server that answers
//! like their documented endpoints.

use crate::{query, Attempt, REDIRECT_URI};
use convosphere_domain::oauth::Provider::{Facebook, GitHub};
use convosphere_oauth::testing::{access_token, FakeGithubFacebook as FakeProvider, Person};
use convosphere_oauth::{Credentials, FacebookConfig, GitHubConfig, OAuthClients, OAuthConfig};
use serde_json::json;

fn credentials() -> Credentials {
    Credentials {
        client_id: "client-1".into(),
        client_secret: "secret-1".to_owned().into(),
    }
}

/// The code of the one person the fake knows.
const CODE: &str = "good-code";

/// The fake, knowing the default [`Person`] by [`CODE`].
async fn fake() -> FakeProvider {
    FakeProvider::start([(CODE, Person::default())]).await
}

fn clients(fake: &FakeProvider) -> OAuthClients {
    OAuthClients::new(OAuthConfig {
        github: Some(GitHubConfig {
            credentials: credentials(),
            auth_url: format!("{}/login/oauth/authorize", fake.base),
            token_url: format!("{}/login/oauth/access_token", fake.base),
            api_url: format!("{}/api", fake.base),
        }),
        facebook: Some(FacebookConfig {
            credentials: credentials(),
            auth_url: format!("{}/dialog/oauth", fake.base),
            token_url: format!("{}/oauth/access_token", fake.base),
            api_url: format!("{}/graph", fake.base),
        }),
        ..OAuthConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn only_configured_providers_are_enabled_and_bad_endpoints_are_named() {
    use convosphere_domain::ports::OAuthProvider;
    let fake = fake().await;
    let clients = clients(&fake);
    assert_eq!(clients.enabled(), [GitHub, Facebook]);
    assert!(!clients.is_enabled(convosphere_domain::oauth::Provider::Google));
    let error = OAuthClients::new(OAuthConfig {
        github: Some(GitHubConfig {
            credentials: credentials(),
            auth_url: "github.com/login".into(),
            token_url: GitHubConfig::DEFAULT_TOKEN_URL.into(),
            api_url: GitHubConfig::DEFAULT_API_URL.into(),
        }),
        ..OAuthConfig::default()
    })
    .unwrap_err();
    assert_eq!((error.provider, error.field), (GitHub, "auth_url"));
}

#[tokio::test]
async fn github_authorization_asks_for_the_addresses_with_pkce() {
    let fake = fake().await;
    let attempt = Attempt::new();
    let url = attempt.url(&clients(&fake), GitHub).await.unwrap();
    assert!(
        url.starts_with(&format!("{}/login/oauth/authorize?", fake.base)),
        "{url}"
    );
    assert_eq!(query(&url, "client_id").as_deref(), Some("client-1"));
    assert_eq!(query(&url, "redirect_uri").as_deref(), Some(REDIRECT_URI));
    assert_eq!(query(&url, "state").as_deref(), Some(attempt.state.expose()));
    assert_eq!(query(&url, "scope").as_deref(), Some("read:user user:email"));
    assert_eq!(query(&url, "code_challenge_method").as_deref(), Some("S256"));
    assert_eq!(query(&url, "code_challenge").unwrap().len(), 43);
}

#[tokio::test]
async fn github_gives_the_user_id_and_the_primary_verified_address() {
    let fake = fake().await;
    let attempt = Attempt::new();
    let identity = attempt.identify(&clients(&fake), GitHub, CODE).await.unwrap();
    assert_eq!(identity.subject, "583231");
    assert_eq!(identity.email.as_deref(), Some("octo@example.com"));
    assert!(identity.email_verified);
    assert_eq!(identity.name.as_deref(), Some("The Octocat"));

    let token_call = &fake.seen("/login/oauth/access_token")[0];
    assert_eq!(token_call.form["code"], CODE);
    assert_eq!(token_call.form["client_secret"], "secret-1");
    assert_eq!(token_call.form["redirect_uri"], REDIRECT_URI);
    assert_eq!(token_call.form["code_verifier"], attempt.verifier.expose());
    let emails_call = &fake.seen("/api/user/emails")[0];
    assert_eq!(
        emails_call.authorization.as_deref(),
        Some(format!("Bearer {}", access_token(CODE)).as_str())
    );
}

#[tokio::test]
async fn a_github_primary_address_that_is_not_verified_is_not_verified() {
    let fake = fake().await;
    fake.change(CODE, |p| {
        p.emails = json!([
            {"email": "verified-secondary@example.com", "primary": false, "verified": true},
            {"email": "octo@example.com", "primary": true, "verified": false},
        ])
    });
    let identity = Attempt::new().identify(&clients(&fake), GitHub, CODE).await.unwrap();
    assert_eq!(identity.email.as_deref(), Some("octo@example.com"));
    assert!(!identity.email_verified, "a verified secondary address does not count");
    assert_eq!(identity.verified_email(), None);
}

#[tokio::test]
async fn github_refusals_and_failures_are_errors() {
    let fake = fake().await;
    let clients = clients(&fake);
    let error = Attempt::new().identify(&clients, GitHub, "bad-code").await.unwrap_err();
    assert!(error.0.contains("bad_verification_code"), "{error}");
    fake.change(CODE, |p| p.token_status = 500);
    let error = Attempt::new().identify(&clients, GitHub, CODE).await.unwrap_err();
    assert!(error.0.contains("500"), "{error}");
    fake.change(CODE, |p| p.token_status = 200);
    fake.change(CODE, |p| p.user = json!({"login": "no-id"}));
    let error = Attempt::new().identify(&clients, GitHub, CODE).await.unwrap_err();
    assert!(error.0.contains("/user"), "{error}");
}

#[tokio::test]
async fn facebook_gives_the_app_scoped_id_and_its_address() {
    let fake = fake().await;
    let attempt = Attempt::new();
    let clients = clients(&fake);
    let url = attempt.url(&clients, Facebook).await.unwrap();
    assert!(url.starts_with(&format!("{}/dialog/oauth?", fake.base)), "{url}");
    assert_eq!(query(&url, "scope").as_deref(), Some("email public_profile"));
    assert_eq!(query(&url, "response_type").as_deref(), Some("code"));
    assert_eq!(query(&url, "code_challenge_method").as_deref(), Some("S256"));

    let identity = attempt.identify(&clients, Facebook, CODE).await.unwrap();
    assert_eq!(identity.subject, "10158");
    assert_eq!(identity.email.as_deref(), Some("mark@example.com"));
    assert!(identity.email_verified);
    let me = &fake.seen("/graph/me")[0];
    assert_eq!(me.query["fields"], "id,name,email");
    assert_eq!(me.query["appsecret_proof"].len(), 64, "HMAC-SHA256 in hex");
    assert_eq!(
        fake.seen("/oauth/access_token")[0].form["code_verifier"],
        attempt.verifier.expose()
    );
}

#[tokio::test]
async fn facebook_without_an_address_and_facebook_refusals() {
    let fake = fake().await;
    let clients = clients(&fake);
    fake.change(CODE, |p| p.me = json!({"id": "10159", "name": "No Mail"}));
    let identity = Attempt::new().identify(&clients, Facebook, CODE).await.unwrap();
    assert_eq!((identity.email, identity.email_verified), (None, false));
    let error = Attempt::new()
        .identify(&clients, Facebook, "bad-code")
        .await
        .unwrap_err();
    assert!(error.0.contains("OAuthException"), "{error}");
    fake.change(CODE, |p| p.token_status = 503);
    let error = Attempt::new().identify(&clients, Facebook, CODE).await.unwrap_err();
    assert!(error.0.contains("503"), "{error}");
}
