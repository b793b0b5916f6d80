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
use actix_web::body::MessageBody;
use actix_web::cookie::Cookie;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, FromRequest, HttpMessage, HttpRequest};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use convosphere_crypto::OsRng;
use convosphere_domain::auth::Principal;
use convosphere_domain::ports::{RateLimiter, RateSubject, Rng};
use convosphere_domain::CredentialError;
use convosphere_domain::User;
use convosphere_service::common::cookie::{csrf_matches, WebState};
use convosphere_service::common::extract::{state, ClientInfo};
use convosphere_service::common::problem::ApiError;
use convosphere_service::state::AppState;
use futures_util::future::LocalBoxFuture;
use std::sync::Arc;

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
        .check(RateSubject::client(client.ip), state.config.ip_rate_limit)
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
