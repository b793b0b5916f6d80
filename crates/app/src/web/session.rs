//! Browser sessions and CSRF: the API's own sessions kept in a sealed
//! cookie, and the extractors every page handler takes.
//!
//! - The session cookie holds the access and refresh token of a session
//!   opened by the same use case as `POST /v1/auth/login`, sealed with
//!   XChaCha20-Poly1305 under a key derived from `AUTH_SECRET_KEY_FILE`. Each
//!   request checks the access token with `Auth::authenticate` (so a logout or
//!   a revocation is honoured at once, and the idle timeout applies); an
//!   expired access token is traded with `Auth::refresh` and the cookie
//!   replaced.
//! - CSRF: a form posted by a signed-in browser carries
//!   `HMAC(key, "session:" + session id)`; an anonymous form carries
//!   `HMAC(key, "visitor:" + a random cookie)`. [`SignedInForm`] and
//!   [`AnonForm`] check it before a handler runs, so no POST handler can
//!   forget to.

use super::error::{page_error, PageError};
use super::form::FormData;
use crate::http::extract::{state, ClientInfo};
use crate::http::problem::ApiError;
use crate::state::{AppAuth, AppState};
use actix_web::body::MessageBody;
use actix_web::cookie::{time, Cookie, SameSite};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{Error, FromRequest, HttpMessage, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use convosphere_cache::TtlCache;
use convosphere_crypto::{constant_time_eq, OsRng, Sealer, SecretKey};
use convosphere_domain::auth::{IssuedTokens, Principal, RefreshError};
use convosphere_domain::ports::{RateLimiter, RateSubject, Rng, SecretBox};
use convosphere_domain::CredentialError;
use convosphere_domain::{InfraError, SessionId, User};
use futures_util::future::LocalBoxFuture;
use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// How long a refresh's outcome answers for the refresh token it replaced:
/// two tabs loading at once share one refresh instead of the second being
/// taken for a stolen token (which would end the session).
const REFRESH_GRACE: Duration = Duration::from_secs(30);

/// The headers of every page.
const PAGE_HEADERS: [(&str, &str); 5] = [
    (
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         frame-ancestors 'none'; form-action 'self'",
    ),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
];

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
struct Refreshed {
    access: String,
    cookie: String,
    max_age: i64,
}

/// What the session cookie holds, sealed.
#[derive(Serialize, Deserialize)]
struct CookieTokens {
    a: String,
    r: String,
}

/// A sealed value handed to the browser in a form (a login waiting for its
/// second factor, a 2FA setup waiting for its code), valid for a while.
#[derive(Serialize, Deserialize)]
struct Ticket<T> {
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

    fn csrf_cookie_name(&self) -> &'static str {
        if self.secure {
            "__Host-convosphere_csrf"
        } else {
            "convosphere_csrf"
        }
    }

    fn cookie(&self, name: &'static str, value: String) -> Cookie<'static> {
        Cookie::build(name, value)
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(self.secure)
            .finish()
    }

    fn seal_tokens(&self, access: &str, refresh: &str) -> Result<String, InfraError> {
        let tokens = CookieTokens {
            a: access.to_owned(),
            r: refresh.to_owned(),
        };
        let plain = serde_json::to_vec(&tokens).map_err(InfraError::new)?;
        self.cookie_box.seal(&plain)
    }

    fn open_tokens(&self, sealed: &str) -> Option<CookieTokens> {
        let plain = self.cookie_box.open(sealed).ok()?;
        serde_json::from_slice(&plain).ok()
    }

    fn session_cookie_of(&self, sealed: String, max_age: i64) -> Cookie<'static> {
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
    pub(crate) fn seal_ticket<T: Serialize>(&self, kind: &str, ttl_secs: i64, body: T) -> Result<String, InfraError> {
        let ticket = Ticket {
            kind: kind.to_owned(),
            exp: chrono::Utc::now().timestamp() + ttl_secs,
            body,
        };
        let plain = serde_json::to_vec(&ticket).map_err(InfraError::new)?;
        self.ticket_box.seal(&plain)
    }

    /// Opens a ticket of the purpose `kind` that has not expired.
    pub(crate) fn open_ticket<T: DeserializeOwned>(&self, kind: &str, sealed: Option<&str>) -> Option<T> {
        let plain = self.ticket_box.open(sealed?).ok()?;
        let ticket: Ticket<T> = serde_json::from_slice(&plain).ok()?;
        (ticket.kind == kind && ticket.exp > chrono::Utc::now().timestamp()).then_some(ticket.body)
    }

    fn csrf_for(&self, binding: &str) -> String {
        URL_SAFE_NO_PAD.encode(hmac(self.csrf_key.expose(), binding.as_bytes()))
    }

    /// The CSRF token of a signed-in browser's forms.
    pub(crate) fn session_csrf(&self, session: SessionId) -> String {
        self.csrf_for(&format!("session:{session}"))
    }

    fn visitor_csrf(&self, cookie: &str) -> String {
        self.csrf_for(&format!("visitor:{cookie}"))
    }

    /// Trades a refresh token once, however many requests present it
    /// within [`REFRESH_GRACE`] on this instance.
    async fn refresh(
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

/// Cookies a handler's extractors want set on the answer (a refreshed
/// session, a new CSRF cookie).
#[derive(Default)]
struct PendingCookies(Vec<Cookie<'static>>);

fn set_cookie_later(req: &HttpRequest, cookie: Cookie<'static>) {
    let mut extensions = req.extensions_mut();
    match extensions.get_mut::<PendingCookies>() {
        Some(pending) => pending.0.push(cookie),
        None => {
            extensions.insert(PendingCookies(vec![cookie]));
        }
    }
}

/// Wraps every page: security headers, `Cache-Control: no-store` unless the
/// handler chose otherwise, and the cookies the extractors asked for (unless
/// the handler set the same cookie itself, as a logout does).
pub async fn page_middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let mut response = next.call(req).await?;
    let pending = response.request().extensions_mut().remove::<PendingCookies>();
    if let Some(pending) = pending {
        let set: Vec<String> = response.response().cookies().map(|c| c.name().to_owned()).collect();
        for cookie in pending.0 {
            if !set.iter().any(|name| name == cookie.name()) {
                response.response_mut().add_cookie(&cookie)?;
            }
        }
    }
    let headers = response.headers_mut();
    for (name, value) in PAGE_HEADERS {
        headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(response)
}

/// A browser whose session is active.
pub(crate) struct SignedIn {
    /// The account and the session.
    pub principal: Arc<Principal>,
    /// The CSRF token of this session's forms.
    pub csrf: String,
    /// Where the request came from.
    pub client: ClientInfo,
}

impl SignedIn {
    /// The account.
    pub fn user(&self) -> &User {
        &self.principal.user
    }
}

/// The login page, coming back to this page afterwards when it was a GET.
fn sign_in_first(req: &HttpRequest, notice: Option<&str>, clear: Option<Cookie<'static>>) -> PageError {
    let clear = clear.map(Box::new);
    let mut query = form_urlencoded::Serializer::new(String::new());
    if req.method() == actix_web::http::Method::GET {
        let here = match req.query_string() {
            "" => req.path().to_owned(),
            query => format!("{}?{query}", req.path()),
        };
        if here != "/dashboard" {
            query.append_pair("next", &here);
        }
    }
    if let Some(notice) = notice {
        query.append_pair("notice", notice);
    }
    let query = query.finish();
    let location = if query.is_empty() {
        "/login".to_owned()
    } else {
        format!("/login?{query}")
    };
    PageError::Redirect { location, clear }
}

/// The session is over (or unusable): back to the login page, cookie removed.
fn session_over(req: &HttpRequest, web: &WebState, error: ApiError) -> PageError {
    match error.code() {
        "internal" | "unavailable" => error.into(),
        "account_locked" => sign_in_first(req, Some("account_locked"), Some(web.session_removal())),
        _ => sign_in_first(req, Some("session_expired"), Some(web.session_removal())),
    }
}

async fn sign_in(req: &HttpRequest) -> Result<SignedIn, PageError> {
    let state = state(req)?;
    let web = &state.web;
    let Some(cookie) = req.cookie(web.session_cookie_name()) else {
        return Err(sign_in_first(req, None, None));
    };
    let Some(tokens) = web.open_tokens(cookie.value()) else {
        return Err(sign_in_first(req, None, Some(web.session_removal())));
    };
    let client = ClientInfo::of(req, &state.config.trusted_proxies);
    let principal = match state.auth.authenticate(&tokens.a).await {
        Ok(caller) => caller,
        Err(CredentialError::TokenExpired) => {
            let refreshed = web
                .refresh(&state.auth, &tokens.r, &client.context())
                .await
                .map_err(|e| session_over(req, web, e.into()))?;
            set_cookie_later(req, web.session_cookie_of(refreshed.cookie, refreshed.max_age));
            state
                .auth
                .authenticate(&refreshed.access)
                .await
                .map_err(|e| session_over(req, web, e.into()))?
        }
        Err(e) => return Err(session_over(req, web, e.into())),
    };
    // The cookie holds an access token, never an API key.
    let Some(principal) = principal.into_user() else {
        return Err(session_over(req, web, CredentialError::InvalidToken.into()));
    };
    Ok(SignedIn {
        csrf: web.session_csrf(principal.session_id),
        principal,
        client,
    })
}

/// Whether the request comes from a signed-in browser (for the login and
/// signup pages, which send it on to the dashboard).
pub(crate) async fn is_signed_in(req: &HttpRequest) -> bool {
    let has_cookie = state(req).is_ok_and(|s| req.cookie(s.web.session_cookie_name()).is_some());
    has_cookie && sign_in(req).await.is_ok()
}

impl FromRequest for SignedIn {
    type Error = PageError;
    type Future = LocalBoxFuture<'static, Result<Self, PageError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { sign_in(&req).await })
    }
}

fn csrf_matches(expected: &str, given: Option<&str>) -> bool {
    given.is_some_and(|given| constant_time_eq(expected.as_bytes(), given.as_bytes()))
}

/// A form posted by a signed-in browser, its CSRF token checked.
pub(crate) struct SignedInForm {
    /// The browser.
    pub who: SignedIn,
    /// The fields.
    pub form: FormData,
}

impl FromRequest for SignedInForm {
    type Error = PageError;
    type Future = LocalBoxFuture<'static, Result<Self, PageError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            let who = sign_in(&req).await?;
            let form = FormData::read(&mut payload).await?;
            if !csrf_matches(&who.csrf, form.get("csrf")) {
                return Err(PageError::csrf());
            }
            Ok(Self { who, form })
        })
    }
}

/// A browser without a session: the CSRF token of its forms, from a
/// random cookie set now if it has none.
pub(crate) struct Visitor {
    /// The CSRF token of the page's forms.
    pub csrf: String,
}

fn visitor(req: &HttpRequest) -> Result<Visitor, PageError> {
    let state = state(req)?;
    let web = &state.web;
    let value = match req.cookie(web.csrf_cookie_name()) {
        Some(cookie) if cookie.value().len() == 43 => cookie.value().to_owned(),
        _ => {
            let mut bytes = [0u8; 32];
            OsRng.fill_bytes(&mut bytes);
            let value = URL_SAFE_NO_PAD.encode(bytes);
            set_cookie_later(req, web.cookie(web.csrf_cookie_name(), value.clone()));
            value
        }
    };
    Ok(Visitor {
        csrf: web.visitor_csrf(&value),
    })
}

impl FromRequest for Visitor {
    type Error = PageError;
    type Future = std::future::Ready<Result<Self, PageError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(visitor(req))
    }
}

/// A form posted without a session (login, signup, forgot, reset, verify),
/// its CSRF token checked against the browser's cookie, and counted
/// against the client IP's budget (`AUTH_IP_RATE_LIMIT`, shared with the
/// API's unauthenticated endpoints).
pub(crate) struct AnonForm {
    /// The fields.
    pub form: FormData,
    /// The CSRF token, to render the form again.
    pub csrf: String,
    /// Where the request came from.
    pub client: ClientInfo,
}

async fn ip_allowed(state: &AppState, req: &HttpRequest, client: &ClientInfo) -> Result<(), PageError> {
    let decision = state
        .ip_limiter
        .check(RateSubject::Ip(client.ip), state.config.ip_rate_limit)
        .await
        .map_err(page_error)?;
    // `observe` adds the `RateLimit-*` headers from this decision.
    req.extensions_mut().insert(decision);
    if !decision.allowed {
        state.metrics.rate_limited.with_label_values(&["ip"]).inc();
        return Err(ApiError::rate_limited(&decision).into());
    }
    Ok(())
}

impl FromRequest for AnonForm {
    type Error = PageError;
    type Future = LocalBoxFuture<'static, Result<Self, PageError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            let state = state(&req)?;
            let client = ClientInfo::of(&req, &state.config.trusted_proxies);
            ip_allowed(state, &req, &client).await?;
            let form = FormData::read(&mut payload).await?;
            let cookie = req.cookie(state.web.csrf_cookie_name()).ok_or_else(PageError::csrf)?;
            let csrf = state.web.visitor_csrf(cookie.value());
            if !csrf_matches(&csrf, form.get("csrf")) {
                return Err(PageError::csrf());
            }
            Ok(Self { form, csrf, client })
        })
    }
}

/// `303 See Other` to `location`.
pub(crate) fn see_other(location: &str) -> HttpResponse {
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
pub(crate) fn safe_next(next: Option<&str>) -> &str {
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
