//! `/settings/sessions`: where the account is signed in; this one marked,
//! any other one can be ended.

use super::dashboard::NoticeQuery;
use super::error::{page_error, PageError};
use super::layout::{app_page, csrf_field, html, table, when, Nav, ACTIONS};
use super::session::{SignedIn, SignedInForm};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use convosphere_domain::{Session, SessionId};
use convosphere_service::common::cookie::see_other;
use convosphere_service::state::AppState;
use maud::html;

type Page = Result<HttpResponse, PageError>;

/// "Chrome on Linux" from a `User-Agent`.
pub(crate) fn device(user_agent: Option<&str>) -> String {
    let Some(ua) = user_agent.filter(|ua| !ua.trim().is_empty()) else {
        return "Unknown device".to_owned();
    };
    let browser = if ua.contains("Edg/") {
        "Edge"
    } else if ua.contains("OPR/") {
        "Opera"
    } else if ua.contains("Firefox/") {
        "Firefox"
    } else if ua.contains("Chrome/") || ua.contains("Chromium/") {
        "Chrome"
    } else if ua.contains("Safari/") {
        "Safari"
    } else {
        ""
    };
    let os = if ua.contains("Windows") {
        "Windows"
    } else if ua.contains("iPhone") || ua.contains("iPad") {
        "iOS"
    } else if ua.contains("Android") {
        "Android"
    } else if ua.contains("Mac OS X") || ua.contains("Macintosh") {
        "macOS"
    } else if ua.contains("CrOS") {
        "ChromeOS"
    } else if ua.contains("Linux") {
        "Linux"
    } else {
        ""
    };
    match (browser, os) {
        ("", _) => ua.split([' ', '/']).next().unwrap_or(ua).chars().take(40).collect(),
        (browser, "") => browser.to_owned(),
        (browser, os) => format!("{browser} on {os}"),
    }
}

fn ends(session: &Session, idle: chrono::Duration) -> chrono::DateTime<chrono::Utc> {
    session.expires_at.min(session.last_active_at + idle)
}

/// `GET /settings/sessions`
pub(crate) async fn list(state: web::Data<AppState>, who: SignedIn, query: web::Query<NoticeQuery>) -> Page {
    let sessions = state.auth.sessions(who.user().id).await.map_err(page_error)?;
    let idle = state.auth.config().session_idle_timeout;
    let current = who.principal.session_id;
    let content = html! {
        div.page-head {
            h1 { "Sessions" }
            p {
                "Where your account is signed in: browsers and apps, through the API too. "
                "At most " (state.config.max_sessions) " at once; a new sign-in ends the oldest."
            }
        }
        section.card aria-labelledby="sessions-title" {
            h2 #sessions-title { (sessions.len()) " active" }
            (table(&["Device", "IP address", "Signed in", "Last active", "Ends", ACTIONS], html! {
                @for session in &sessions {
                    @let is_current = session.id == current;
                    tr.is-current[is_current] data-session=(session.id.to_string()) {
                        td data-label="Device" {
                            div {
                                span.device { (device(session.user_agent.as_deref())) }
                                @if is_current { " " span.badge.badge-current { "This session" } }
                                @if let Some(ua) = &session.user_agent { div.ua { (ua) } }
                            }
                        }
                        td data-label="IP address" { (session.ip.as_deref().unwrap_or("—")) }
                        td data-label="Signed in" { (when(session.created_at)) }
                        td data-label="Last active" { (when(session.last_active_at)) }
                        td data-label="Ends" { (when(ends(session, idle))) }
                        td.cell-actions {
                            @if is_current {
                                form.inline method="post" action="/logout" {
                                    (csrf_field(&who.csrf))
                                    button.btn.btn-secondary.btn-small type="submit" { "Log out" }
                                }
                            } @else {
                                form.inline method="post" action=(format!("/settings/sessions/{}/end", session.id)) {
                                    (csrf_field(&who.csrf))
                                    button.btn.btn-danger-quiet.btn-small type="submit"
                                        aria-label=(format!("End the session of {}", device(session.user_agent.as_deref()))) {
                                        "End session"
                                    }
                                }
                            }
                        }
                    }
                }
            }))
        }
    };
    Ok(html(
        StatusCode::OK,
        app_page("Sessions", &who, Nav::Sessions, query.notice.as_deref(), content),
    ))
}

/// `POST /settings/sessions/{id}/end`: the same use case as `DELETE /v1/sessions/{id}`.
pub(crate) async fn end(state: web::Data<AppState>, id: web::Path<String>, post: SignedInForm) -> Page {
    let who = &post.who;
    let id: SessionId = id.parse().map_err(|_| PageError::not_found())?;
    state
        .auth
        .revoke_session(who.user().id, id, &who.client.context())
        .await
        .map_err(page_error)?;
    if id == who.principal.session_id {
        return Ok(see_other("/login?notice=logged_out"));
    }
    Ok(see_other("/settings/sessions?notice=session_ended"))
}

#[cfg(test)]
mod tests {
    use super::device;

    #[test]
    fn devices_are_named_from_their_user_agent() {
        let chrome =
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
        assert_eq!(device(Some(chrome)), "Chrome on Linux");
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
        assert_eq!(device(Some(iphone)), "Safari on iOS");
        assert_eq!(device(Some("curl/8.5.0")), "curl");
        assert_eq!(device(None), "Unknown device");
    }
}
