//! Logging in with an identity provider (OAuth 2 / OpenID Connect): the
//! providers, the rule for where a browser may be sent back to, and what a
//! provider tells about its user. The use cases are in [`crate::auth::oauth`];
//! the ports are [`OAuthProvider`](crate::ports::OAuthProvider) and
//! [`OAuthRepository`](crate::ports::OAuthRepository).

use crate::{Email, OpaqueToken, TokenHash, UserId};
use chrono::{DateTime, Utc};
use strum::{Display, EnumString, IntoStaticStr};
use url::Url;

/// An identity provider a user can log in with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, IntoStaticStr, Display, EnumString)]
#[strum(serialize_all = "lowercase", parse_err_ty = UnknownProvider, parse_err_fn = unknown_provider)]
pub enum Provider {
    /// Google, through OpenID Connect (any OpenID Provider can stand in).
    Google,
    /// GitHub (or GitHub Enterprise), OAuth 2.
    GitHub,
    /// Facebook, OAuth 2 and the Graph API.
    Facebook,
}

impl Provider {
    /// Every provider.
    pub const ALL: [Provider; 3] = [Provider::Google, Provider::GitHub, Provider::Facebook];

    /// The name in paths, storage and events: `google`, `github`, `facebook`.
    pub fn as_str(&self) -> &'static str {
        self.into()
    }

    /// The name people know it by: `Google`, `GitHub`, `Facebook`.
    pub fn display_name(&self) -> &'static str {
        match self {
            Provider::Google => "Google",
            Provider::GitHub => "GitHub",
            Provider::Facebook => "Facebook",
        }
    }

    /// `oauth:<provider>`, the `method` of a `login_succeeded` event.
    pub fn login_method(&self) -> &'static str {
        match self {
            Provider::Google => "oauth:google",
            Provider::GitHub => "oauth:github",
            Provider::Facebook => "oauth:facebook",
        }
    }
}

/// A provider name this service does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown OAuth provider {0:?}")]
pub struct UnknownProvider(pub String);

fn unknown_provider(name: &str) -> UnknownProvider {
    UnknownProvider(name.to_owned())
}

/// What a provider says about the person who logged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderIdentity {
    /// The provider's stable id of the person (OIDC `sub`, GitHub's numeric
    /// id, Facebook's app-scoped id). Never the e-mail: addresses change hands.
    pub subject: String,
    /// The e-mail address the provider gave, if any.
    pub email: Option<String>,
    /// Whether the provider says it verified that address.
    pub email_verified: bool,
    /// The person's name, if the provider gave one.
    pub name: Option<String>,
}

impl ProviderIdentity {
    /// The address, if the provider verified it and it is a valid address.
    pub fn verified_email(&self) -> Option<Email> {
        self.email
            .as_deref()
            .filter(|_| self.email_verified)
            .and_then(|e| Email::parse(e).ok())
    }
}

/// A new authorization request, for the adapter to turn into the URL the
/// browser is sent to. The domain makes the secrets; the adapter derives the
/// PKCE `S256` challenge from the verifier.
#[derive(Debug)]
pub struct AuthorizationRequest<'a> {
    /// The provider.
    pub provider: Provider,
    /// The `state` parameter.
    pub state: &'a OpaqueToken,
    /// The PKCE code verifier (43 base64url characters).
    pub pkce_verifier: &'a OpaqueToken,
    /// The OIDC `nonce` (ignored by plain OAuth 2 providers).
    pub nonce: &'a str,
    /// `<AUTH_PUBLIC_URL>/v1/auth/oauth/<provider>/callback`.
    pub redirect_uri: &'a str,
}

/// What the callback brought back, for the adapter to redeem.
#[derive(Debug)]
pub struct CodeGrant<'a> {
    /// The provider.
    pub provider: Provider,
    /// The authorization code.
    pub code: &'a OpaqueToken,
    /// The PKCE code verifier of the request.
    pub pkce_verifier: &'a OpaqueToken,
    /// The nonce the ID token must carry (OIDC).
    pub nonce: &'a str,
    /// The redirect URI of the request.
    pub redirect_uri: &'a str,
}

/// A provider refused, failed, or answered something unusable: an error
/// response, a bad or mismatched ID token, no subject, a network failure.
/// The text is for logs and the problem's `detail`; it holds no secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProviderError(pub String);

impl ProviderError {
    /// A new error with this text.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }
}

/// An authorization in flight: stored at `start`, taken (once) at the callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLogin {
    /// The hash of the `state` parameter (the key).
    pub state: TokenHash,
    /// The provider it was started with.
    pub provider: Provider,
    /// The hash of the browser-binding cookie set at `start`.
    pub browser: TokenHash,
    /// The PKCE code verifier, sealed by the [`SecretBox`](crate::ports::SecretBox).
    pub sealed_verifier: String,
    /// The OIDC nonce.
    pub nonce: String,
    /// Where to send the browser afterwards, as checked at `start`
    /// (absolute); `None` when the caller named nothing.
    pub redirect_to: Option<String>,
    /// `Some` when a signed-in person asked to link the provider to their
    /// account, rather than to sign in with it.
    pub link: Option<LinkRequest>,
    /// When it was started.
    pub created_at: DateTime<Utc>,
    /// When it stops being accepted.
    pub expires_at: DateTime<Utc>,
}

/// Who asked to link a provider while signed in: the identity joins this
/// account, whatever address it comes with, if the session still lives
/// when the provider answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkRequest {
    /// The account the identity is to join.
    pub user: UserId,
    /// The session that asked.
    pub session: crate::SessionId,
}

/// A provider identity tied to an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkedIdentity {
    /// The provider.
    pub provider: Provider,
    /// The provider's id of the person.
    pub subject: String,
    /// The account.
    pub user_id: UserId,
    /// The verified address the identity came with when it was linked.
    pub email: Email,
    /// When it was linked.
    pub created_at: DateTime<Utc>,
}

/// A linked identity as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRecord {
    /// The provider.
    pub provider: Provider,
    /// The verified address it came with when it was linked.
    pub email: Email,
    /// When it was linked.
    pub linked_at: DateTime<Utc>,
    /// When a login last used it (`None`: not since this was recorded).
    pub last_used_at: Option<DateTime<Utc>>,
}

/// What became of an attempt to unlink an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnlinkOutcome {
    /// It is unlinked.
    Unlinked,
    /// The account has no identity of that provider.
    NotLinked,
    /// Refused: the account has no password and no other identity, so it
    /// would have no way to sign in.
    LastWayIn,
}

/// What became of an attempt to link an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkOutcome {
    /// It is linked now.
    Linked,
    /// It was linked already (a parallel login got there first), to this account.
    AlreadyLinked(UserId),
}

/// Why a `redirect_to` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("redirect_to {0}")]
pub struct RedirectRefused(pub &'static str);

/// The rule for where a browser may be sent after an OAuth login: a path
/// of this service (relative to `AUTH_PUBLIC_URL`), or a URL under one of
/// the `AUTH_OAUTH_REDIRECT_ALLOWLIST` prefixes.
///
/// Matching is on the parsed URL, never on the raw text: same scheme, same
/// host, same port (the default port counts as given), and a path that
/// begins with the prefix's path at a segment boundary (`/app` allows
/// `/app` and `/app/x`, not `/apple`). The path is normalized first
/// (`/app/../admin` is `/admin`). User info (`user@host`), other schemes,
/// protocol-relative (`//host`) and backslash (`/\host`) forms, and control
/// characters are refused outright.
#[derive(Debug, Clone)]
pub struct RedirectPolicy {
    public: Url,
    allowed: Vec<Url>,
}

/// The most characters a `redirect_to` may have.
pub const MAX_REDIRECT_CHARS: usize = 2048;

/// Where the browser goes when no `redirect_to` was named: the web
/// dashboard (the app signs the browser in there).
pub const DEFAULT_REDIRECT_PATH: &str = "/dashboard";

fn parse_base(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!("{text:?} is not an http(s) URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{text:?} must not hold user info"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{text:?} must not have a query or a fragment"));
    }
    Ok(url)
}

impl RedirectPolicy {
    /// The policy of a service at `public_url` with these allowed prefixes.
    /// An error names the entry that is not an http(s) URL prefix.
    pub fn new(public_url: &str, allowlist: &[String]) -> Result<Self, String> {
        let mut public = parse_base(public_url)?;
        if !public.path().ends_with('/') {
            let path = format!("{}/", public.path());
            public.set_path(&path);
        }
        let allowed = allowlist.iter().map(|p| parse_base(p)).collect::<Result<_, _>>()?;
        Ok(Self { public, allowed })
    }

    /// The absolute URL of a path of this service.
    fn service_url(&self, path: &str) -> Option<Url> {
        self.public.join(path.trim_start_matches('/')).ok()
    }

    /// The default destination (`<AUTH_PUBLIC_URL>/dashboard`).
    pub fn default_target(&self) -> String {
        self.service_url(DEFAULT_REDIRECT_PATH)
            .map_or_else(|| self.public.to_string(), String::from)
    }

    /// Checks a `redirect_to`; answers the absolute URL to send the browser to.
    pub fn check(&self, redirect_to: &str) -> Result<String, RedirectRefused> {
        if redirect_to.is_empty() {
            return Err(RedirectRefused("is empty"));
        }
        if redirect_to.chars().count() > MAX_REDIRECT_CHARS {
            return Err(RedirectRefused("is too long"));
        }
        if redirect_to
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
        {
            return Err(RedirectRefused("holds whitespace, control characters or a backslash"));
        }
        if redirect_to.starts_with('/') {
            // A path of this service, not `//host` (protocol-relative).
            if redirect_to.starts_with("//") {
                return Err(RedirectRefused("names another host"));
            }
            let url = self
                .service_url(redirect_to)
                .ok_or(RedirectRefused("is not a valid path"))?;
            return if prefix_matches(&self.public, &url) {
                Ok(url.into())
            } else {
                Err(RedirectRefused("is not a path of this service"))
            };
        }
        let url = Url::parse(redirect_to).map_err(|_| RedirectRefused("is neither a path nor a URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(RedirectRefused("must be an http(s) URL"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(RedirectRefused("must not hold user info"));
        }
        if prefix_matches(&self.public, &url) || self.allowed.iter().any(|prefix| prefix_matches(prefix, &url)) {
            Ok(url.into())
        } else {
            Err(RedirectRefused("is not allowed by AUTH_OAUTH_REDIRECT_ALLOWLIST"))
        }
    }
}

/// Same scheme, host and port, and the path under the prefix's path at a
/// segment boundary.
fn prefix_matches(prefix: &Url, url: &Url) -> bool {
    if prefix.scheme() != url.scheme()
        || prefix.host() != url.host()
        || prefix.port_or_known_default() != url.port_or_known_default()
    {
        return false;
    }
    let base = prefix.path();
    let path = url.path();
    if base.ends_with('/') {
        path.starts_with(base) || path == base.trim_end_matches('/')
    } else {
        path == base || path.strip_prefix(base).is_some_and(|rest| rest.starts_with('/'))
    }
}

/// `url` with one more query parameter (the URL was checked when stored).
pub fn with_query(url: &str, key: &str, value: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) => {
            parsed.query_pairs_mut().append_pair(key, value);
            parsed.into()
        }
        Err(_) => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RedirectPolicy {
        RedirectPolicy::new(
            "https://auth.example.com",
            &[
                "https://app.example.com".into(),
                "https://partner.example.org/convosphere".into(),
                "http://localhost:3000/".into(),
            ],
        )
        .unwrap()
    }

    #[test]
    fn providers_have_stable_names() {
        for provider in Provider::ALL {
            assert_eq!(provider.as_str().parse::<Provider>().unwrap(), provider);
        }
        assert_eq!(Provider::GitHub.login_method(), "oauth:github");
        assert!("Google".parse::<Provider>().is_err());
        assert!("twitter".parse::<Provider>().is_err());
    }

    #[test]
    fn paths_of_this_service_are_allowed() {
        let policy = policy();
        assert_eq!(
            policy.check("/dashboard").unwrap(),
            "https://auth.example.com/dashboard"
        );
        assert_eq!(
            policy.check("/settings/api-keys?tab=new").unwrap(),
            "https://auth.example.com/settings/api-keys?tab=new"
        );
        assert_eq!(
            policy.check("https://auth.example.com/settings").unwrap(),
            "https://auth.example.com/settings"
        );
        assert_eq!(policy.default_target(), "https://auth.example.com/dashboard");
        let prefixed = RedirectPolicy::new("https://example.com/auth/", &[]).unwrap();
        assert_eq!(
            prefixed.check("/dashboard").unwrap(),
            "https://example.com/auth/dashboard"
        );
        assert_eq!(prefixed.default_target(), "https://example.com/auth/dashboard");
        assert!(prefixed.check("/../admin").is_err(), "dot segments cannot climb out");
    }

    #[test]
    fn allowlisted_prefixes_match_on_the_parsed_url() {
        let policy = policy();
        for ok in [
            "https://app.example.com",
            "https://app.example.com/after-login?x=1",
            "https://APP.example.com:443/x",
            "https://partner.example.org/convosphere",
            "https://partner.example.org/convosphere/done",
            "http://localhost:3000/cb",
        ] {
            assert!(policy.check(ok).is_ok(), "{ok}");
        }
        for refused in [
            "https://app.example.com.evil.com/",
            "https://app.example.com@evil.com/",
            "https://user:pw@app.example.com/",
            "https://evil.com/https://app.example.com",
            "http://app.example.com/",
            "https://app.example.com:8443/",
            "https://partner.example.org/convosphere-evil",
            "https://partner.example.org/convosphere/../admin",
            "https://partner.example.org/other",
            "http://localhost:3001/cb",
            "javascript:alert(1)",
            "data:text/html,hi",
            "ftp://app.example.com/",
            "//evil.com",
            "//evil.com/dashboard",
            "/\\evil.com",
            "\\\\evil.com",
            "/\t/evil.com",
            " https://app.example.com",
            "evil.com",
            "dashboard",
            "",
        ] {
            assert!(policy.check(refused).is_err(), "{refused:?} must be refused");
        }
        assert!(policy.check(&format!("/{}", "a".repeat(MAX_REDIRECT_CHARS))).is_err());
    }

    #[test]
    fn a_bad_allowlist_entry_is_named() {
        let err = RedirectPolicy::new("https://auth.example.com", &["app.example.com".into()]).unwrap_err();
        assert!(err.contains("app.example.com"), "{err}");
        assert!(RedirectPolicy::new("https://auth.example.com", &["https://u@app.example.com".into()]).is_err());
    }

    #[test]
    fn query_parameters_are_appended() {
        assert_eq!(
            with_query("https://app.example.com/cb?x=1", "code", "a b"),
            "https://app.example.com/cb?x=1&code=a+b"
        );
        assert_eq!(
            with_query("https://app.example.com/cb#frag", "code", "c"),
            "https://app.example.com/cb?code=c#frag"
        );
    }

    #[test]
    fn only_a_verified_valid_address_counts() {
        let mut identity = ProviderIdentity {
            subject: "1".into(),
            email: Some("Ada@Example.com".into()),
            email_verified: true,
            name: None,
        };
        assert_eq!(identity.verified_email().unwrap().as_str(), "ada@example.com");
        identity.email_verified = false;
        assert_eq!(identity.verified_email(), None);
        identity.email_verified = true;
        identity.email = Some("not an address".into());
        assert_eq!(identity.verified_email(), None);
    }
}
