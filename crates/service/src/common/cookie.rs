//! The browser session, shared by the pages and the JSON API's OAuth
//! callback: the keys of the sealed session cookie, form tickets and CSRF
//! tokens, the web refresh, the answers that sign a browser in, and the
//! cookie that binds a provider's flow to the browser that started it.

use crate::common::problem::ApiError;
use crate::state::{AppAuth, AppState};
use actix_web::cookie::{time, Cookie, SameSite};
use actix_web::http::header::{self};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use convosphere_cache::TtlCache;
use convosphere_crypto::{constant_time_eq, Sealer, SecretKey};
use convosphere_domain::auth::{IssuedTokens, RefreshError};
use convosphere_domain::ports::SecretBox;
use convosphere_domain::{InfraError, SessionId};
use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// How long a login may wait for its second factor.
pub const MFA_TICKET_SECS: i64 = 300;
/// The purpose of a ticket that holds a login waiting for its second factor.
pub const MFA_TICKET: &str = "login_mfa";
/// The cookie that carries a provider login's ticket to the second-factor
/// step (the browser arrives there by a redirect, not a form).
pub const MFA_COOKIE: &str = "convosphere_mfa";
/// The path of the second-factor page, the only one that sees [`MFA_COOKIE`].
pub const MFA_PATH: &str = "/login/two-factor";

/// How long a refresh's outcome answers for the refresh token it replaced:
/// two tabs loading at once share one refresh instead of the second being
/// taken for a stolen token (which would end the session). Short, because
/// whoever presents the old cookie within it gets the new one: a stolen
/// cookie replayed later is a reuse, and the session ends.
pub const REFRESH_GRACE: Duration = Duration::from_secs(2);

/// The keys and caches of the web pages.
pub struct WebState {
    cookie_box: Sealer,
    ticket_box: Sealer,
    csrf_key: SecretKey,
    secure: bool,
    refreshes: TtlCache<[u8; 32], Arc<OnceCell<Refreshed>>>,
}

/// A refresh's outcome, shared by the requests that presented the same token.
#[derive(Clone)]
pub struct Refreshed {
    /// The new access token.
    pub access: String,
    /// The new session cookie's sealed value.
    pub cookie: String,
    /// The new session cookie's lifetime, in seconds.
    pub max_age: i64,
}

/// What the session cookie holds, sealed.
#[derive(Serialize, Deserialize)]
pub struct CookieTokens {
    /// The access token.
    pub a: String,
    /// The refresh token.
    pub r: String,
}

/// A sealed value handed to the browser in a form (a login waiting for its
/// second factor, a 2FA setup waiting for its code), valid for a while.
#[derive(Serialize, Deserialize)]
pub struct Ticket<T> {
    kind: String,
    exp: i64,
    body: T,
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// A key for one purpose, derived from the service's secret key.
fn derive(secret: &SecretKey, purpose: &str) -> SecretKey {
    SecretKey::from_bytes(hmac(secret.expose(), purpose.as_bytes()))
}

impl WebState {
    /// Keys derived from `AUTH_SECRET_KEY_FILE`; `secure` when the public URL is https.
    pub fn new(secret: &SecretKey, secure: bool) -> Self {
        Self {
            cookie_box: Sealer::new(&derive(secret, "convosphere web: session cookie v1")),
            ticket_box: Sealer::new(&derive(secret, "convosphere web: form ticket v1")),
            csrf_key: derive(secret, "convosphere web: csrf v1"),
            secure,
            refreshes: TtlCache::new(convosphere_cache::CAPACITY, REFRESH_GRACE),
        }
    }

    /// The session cookie's name: `__Host-` bound to this origin over https.
    pub fn session_cookie_name(&self) -> &'static str {
        if self.secure {
            "__Host-convosphere_session"
        } else {
            "convosphere_session"
        }
    }

    /// The name of the cookie that binds a visitor's forms (`__Host-` over HTTPS).
    pub fn csrf_cookie_name(&self) -> &'static str {
        if self.secure {
            "__Host-convosphere_csrf"
        } else {
            "convosphere_csrf"
        }
    }

    /// A cookie of the pages: `Path=/`, `HttpOnly`, `SameSite=Lax`, `Secure` over HTTPS.
    pub fn cookie(&self, name: &'static str, value: String) -> Cookie<'static> {
        Cookie::build(name, value)
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(self.secure)
            .finish()
    }

    /// Seals a session's tokens into the session cookie's value.
    pub fn seal_tokens(&self, access: &str, refresh: &str) -> Result<String, InfraError> {
        let tokens = CookieTokens {
            a: access.to_owned(),
            r: refresh.to_owned(),
        };
        let plain = serde_json::to_vec(&tokens).map_err(InfraError::new)?;
        self.cookie_box.seal(&plain, b"")
    }

    /// Opens a session cookie's value; `None` if it was not sealed by this service.
    pub fn open_tokens(&self, sealed: &str) -> Option<CookieTokens> {
        let plain = self.cookie_box.open(sealed, b"").ok()?;
        serde_json::from_slice(&plain).ok()
    }

    /// The session cookie holding `sealed`, lasting `max_age` seconds.
    pub fn session_cookie_of(&self, sealed: String, max_age: i64) -> Cookie<'static> {
        let mut cookie = self.cookie(self.session_cookie_name(), sealed);
        cookie.set_max_age(time::Duration::seconds(max_age.max(0)));
        cookie
    }

    /// The cookie that keeps a session opened by a login in the browser;
    /// it lasts as long as the session's refresh lifetime.
    pub fn session_cookie(&self, tokens: &IssuedTokens) -> Result<Cookie<'static>, InfraError> {
        let sealed = self.seal_tokens(&tokens.access_token, tokens.refresh_token.expose())?;
        Ok(self.session_cookie_of(sealed, tokens.refresh_expires_in))
    }

    /// The cookie that removes the session cookie.
    pub fn session_removal(&self) -> Cookie<'static> {
        let mut cookie = self.cookie(self.session_cookie_name(), String::new());
        cookie.make_removal();
        cookie
    }

    /// Seals `body` for a form, valid `ttl_secs` for the purpose `kind`.
    pub fn seal_ticket<T: Serialize>(&self, kind: &str, ttl_secs: i64, body: T) -> Result<String, InfraError> {
        let ticket = Ticket {
            kind: kind.to_owned(),
            exp: chrono::Utc::now().timestamp() + ttl_secs,
            body,
        };
        let plain = serde_json::to_vec(&ticket).map_err(InfraError::new)?;
        self.ticket_box.seal(&plain, b"")
    }

    /// Opens a ticket of the purpose `kind` that has not expired.
    pub fn open_ticket<T: DeserializeOwned>(&self, kind: &str, sealed: Option<&str>) -> Option<T> {
        let plain = self.ticket_box.open(sealed?, b"").ok()?;
        let ticket: Ticket<T> = serde_json::from_slice(&plain).ok()?;
        (ticket.kind == kind && ticket.exp > chrono::Utc::now().timestamp()).then_some(ticket.body)
    }

    /// The CSRF token bound to `binding` (a session, or a visitor's cookie).
    pub fn csrf_for(&self, binding: &str) -> String {
        URL_SAFE_NO_PAD.encode(hmac(self.csrf_key.expose(), binding.as_bytes()))
    }

    /// The CSRF token of a signed-in browser's forms.
    pub fn session_csrf(&self, session: SessionId) -> String {
        self.csrf_for(&format!("session:{session}"))
    }

    /// The CSRF token of a visitor's forms (signup, login), bound to their CSRF cookie.
    pub fn visitor_csrf(&self, cookie: &str) -> String {
        self.csrf_for(&format!("visitor:{cookie}"))
    }

    /// Trades a refresh token once, however many requests present it
    /// within [`REFRESH_GRACE`] on this instance.
    pub async fn refresh(
        &self,
        auth: &AppAuth,
        refresh_token: &str,
        client: &convosphere_domain::ClientContext,
    ) -> Result<Refreshed, RefreshError> {
        let key: [u8; 32] = Sha256::digest(refresh_token.as_bytes()).into();
        let cell = self.refreshes.get_with(key, || Arc::new(OnceCell::new()));
        cell.get_or_try_init(|| async {
            let tokens = auth.refresh(refresh_token, client).await?;
            let cookie = self.seal_tokens(&tokens.access_token, tokens.refresh_token.expose())?;
            Ok::<_, RefreshError>(Refreshed {
                access: tokens.access_token,
                cookie,
                max_age: tokens.refresh_expires_in,
            })
        })
        .await
        .cloned()
    }
}

/// `303 See Other` to `location`.
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::build(StatusCode::SEE_OTHER)
        .insert_header((header::LOCATION, location))
        .finish()
}

/// The answer to a successful login (password, second factor, or OAuth):
/// the session kept in the cookie, and on to `next` (a path of this service).
pub fn signed_in_response(state: &AppState, tokens: &IssuedTokens, next: &str) -> Result<HttpResponse, ApiError> {
    let cookie = state.web.session_cookie(tokens)?;
    let mut response = see_other(safe_next(Some(next)));
    response
        .add_cookie(&cookie)
        .map_err(|e| ApiError::internal(&InfraError::new(e.to_string())))?;
    Ok(response)
}

/// A path of this service to go on to after login, or `/dashboard`: never
/// another site (`//evil.example`, `/\evil.example`, `https://…`).
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.chars().any(char::is_control)
                && path != "/login" =>
        {
            path
        }
        _ => "/dashboard",
    }
}

/// A login waiting for its second factor, sealed into the form of that step.
#[derive(Serialize, Deserialize)]
pub enum PendingLogin {
    /// E-mail and password checked out; asked again with the code.
    Password {
        /// The address typed.
        email: String,
        /// The password typed (sealed in the ticket, never shown).
        password: String,
        /// Where to go once signed in.
        next: String,
    },
    /// A provider's login; its one-time code is exchanged with the code.
    Provider {
        /// The provider login's one-time code.
        code: String,
        /// Where to go once signed in.
        next: String,
    },
}

impl PendingLogin {
    /// Where to go once signed in.
    pub fn next(&self) -> &str {
        match self {
            Self::Password { next, .. } | Self::Provider { next, .. } => next,
        }
    }

    /// The address to fill the login form with again (none for a provider's login).
    pub fn email(&self) -> &str {
        match self {
            Self::Password { email, .. } => email,
            Self::Provider { .. } => "",
        }
    }
}

/// The cookie that carries a provider login's ticket to the second-factor page.
pub fn mfa_cookie(state: &AppState, ticket: String, max_age_secs: i64) -> actix_web::cookie::Cookie<'static> {
    actix_web::cookie::Cookie::build(MFA_COOKIE, ticket)
        .path(MFA_PATH)
        .http_only(true)
        .same_site(actix_web::cookie::SameSite::Lax)
        .secure(state.config.is_https())
        .max_age(actix_web::cookie::time::Duration::seconds(max_age_secs))
        .finish()
}

/// The answer to a provider login of an account with 2FA on: on to the
/// second-factor step, the exchange code sealed in a cookie for that page.
pub fn provider_second_factor(state: &AppState, code: &str, next: &str) -> Result<HttpResponse, ApiError> {
    let pending = PendingLogin::Provider {
        code: code.to_owned(),
        next: next.to_owned(),
    };
    // The exchange code dies after its minute anyway.
    let ticket = state.web.seal_ticket(MFA_TICKET, 60, &pending)?;
    let cookie = mfa_cookie(state, ticket, 60);
    let mut response = see_other(MFA_PATH);
    response
        .add_cookie(&cookie)
        .map_err(|e| ApiError::internal(&convosphere_domain::InfraError::new(e.to_string())))?;
    Ok(response)
}

/// Whether a form's CSRF token is the one expected, in constant time.
pub fn csrf_matches(expected: &str, given: Option<&str>) -> bool {
    given.is_some_and(|given| constant_time_eq(expected.as_bytes(), given.as_bytes()))
}

/// The cookie that binds a login to the browser that started it.
const BINDING_COOKIE: &str = "convosphere_oauth";
/// The cookie's path: only the OAuth endpoints see it.
const COOKIE_PATH: &str = "/v1/auth/oauth/";

/// `Set-Cookie` of the binding cookie (`max_age` 0 clears it).
pub fn binding_cookie(state: &AppState, value: &str, max_age: i64) -> String {
    let secure = if state.config.is_https() { "; Secure" } else { "" };
    format!("{BINDING_COOKIE}={value}; Path={COOKIE_PATH}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
}

/// The binding cookie the browser sent, if any.
pub fn presented_binding(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == BINDING_COOKIE)
        .map(|(_, value)| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert_eq!(safe_next(Some("/settings/api-keys")), "/settings/api-keys");
        assert_eq!(safe_next(Some("/settings/api-keys?x=1")), "/settings/api-keys?x=1");
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "evil",
            "",
            "/a\nb",
        ] {
            assert_eq!(safe_next(Some(bad)), "/dashboard", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/dashboard");
    }

    #[test]
    fn tickets_open_only_for_their_purpose_and_before_they_expire() {
        let web = WebState::new(&SecretKey::generate(), false);
        let sealed = web.seal_ticket("a", 60, "body").unwrap();
        assert_eq!(web.open_ticket::<String>("a", Some(&sealed)).as_deref(), Some("body"));
        assert_eq!(web.open_ticket::<String>("b", Some(&sealed)), None);
        let expired = web.seal_ticket("a", -1, "body").unwrap();
        assert_eq!(web.open_ticket::<String>("a", Some(&expired)), None);
        let other = WebState::new(&SecretKey::generate(), false);
        assert_eq!(other.open_ticket::<String>("a", Some(&sealed)), None);
    }

    #[test]
    fn csrf_tokens_are_bound_to_their_session_or_cookie() {
        let web = WebState::new(&SecretKey::generate(), true);
        assert_ne!(web.visitor_csrf("one"), web.visitor_csrf("two"));
        assert_eq!(web.visitor_csrf("one"), web.visitor_csrf("one"));
        assert!(csrf_matches(&web.visitor_csrf("one"), Some(&web.visitor_csrf("one"))));
        assert!(!csrf_matches(&web.visitor_csrf("one"), None));
        assert!(!csrf_matches(&web.visitor_csrf("one"), Some("")));
        assert_eq!(web.session_cookie_name(), "__Host-convosphere_session");
    }
}
