//! `/settings/api-keys/{id}`: a key's usage, as a bar chart by hour (7
//! days) or by day (30 days), its denials by reason, its last use and its
//! unusual-use events. The chart is server-rendered SVG: readable without
//! JavaScript, with a text alternative and the numbers in a table.

use super::error::{page_error, PageError};
use super::layout::{app_page, html, table, when, when_or, Nav};
use super::session::SignedIn;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use chrono::{Duration, Utc};
use convosphere_domain::usage::{Granularity, Usage, UsageRange};
use convosphere_domain::EventKind;
use convosphere_service::state::AppState;
use maud::{html, Markup};
use serde::Deserialize;

/// The chart's width and height in SVG units (it scales to its box).
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 160.0;

/// `?view=hours` (7 days by hour) or the default, 30 days by day.
#[derive(Deserialize)]
pub(crate) struct ViewQuery {
    view: Option<String>,
}

/// A bar chart of requests per bucket: allowed below, refused stacked on
/// top, with a title and a description that say what it shows.
pub(crate) fn bar_chart(usage: &Usage, title: &str) -> Markup {
    let buckets = &usage.buckets;
    let busiest = buckets.iter().map(|b| b.counts.requests()).max().unwrap_or(0);
    let most = busiest.max(1) as f64;
    let slot = WIDTH / buckets.len().max(1) as f64;
    let bar = (slot * 0.8).max(1.0);
    let height = |n: u64| n as f64 / most * (HEIGHT - 4.0);
    let totals = &usage.totals;
    let unit = match usage.range.granularity {
        Granularity::Hour => "hour",
        Granularity::Day => "day",
    };
    let description = format!(
        "{} requests from {} to {}: {} allowed, {} refused for the rate limit, {} for a missing scope; the busiest {unit} had {}.",
        totals.requests(),
        usage.range.from.format("%Y-%m-%d %H:%M UTC"),
        usage.range.to.format("%Y-%m-%d %H:%M UTC"),
        totals.allowed,
        totals.rate_limited,
        totals.insufficient_scope,
        busiest,
    );
    html! {
        figure.chart {
            svg viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) width="100%" preserveAspectRatio="none"
                role="img" aria-labelledby="chart-title chart-desc" {
                title #chart-title { (title) }
                desc #chart-desc { (description) }
                @for (i, bucket) in buckets.iter().enumerate() {
                    @let x = i as f64 * slot + (slot - bar) / 2.0;
                    @let allowed = height(bucket.counts.allowed);
                    @let refused = height(bucket.counts.rate_limited + bucket.counts.insufficient_scope);
                    @if allowed > 0.0 {
                        rect.bar-allowed x=(format!("{x:.1}")) y=(format!("{:.1}", HEIGHT - allowed))
                            width=(format!("{bar:.1}")) height=(format!("{allowed:.1}")) {}
                    }
                    @if refused > 0.0 {
                        rect.bar-refused x=(format!("{x:.1}")) y=(format!("{:.1}", HEIGHT - allowed - refused))
                            width=(format!("{bar:.1}")) height=(format!("{refused:.1}")) {}
                    }
                }
            }
            figcaption {
                span.legend aria-hidden="true" { span.swatch.swatch-allowed {} "Allowed " span.swatch.swatch-refused {} "Refused" }
                span.chart-text { (description) }
            }
        }
    }
}

/// A key's requests of the last 30 days as a small bar chart for its row
/// in the list, labelled with the total.
pub(crate) fn sparkline(usage: &Usage) -> Markup {
    let busiest = usage
        .buckets
        .iter()
        .map(|b| b.counts.requests())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let label = format!("{} requests in the last 30 days", usage.totals.requests());
    html! {
        svg.spark viewBox="0 0 60 12" preserveAspectRatio="none" role="img" aria-label=(label) {
            title { (label) }
            @for (i, bucket) in usage.buckets.iter().enumerate() {
                @let h = bucket.counts.requests() as f64 / busiest * 12.0;
                @if h > 0.0 {
                    rect x=(i * 2) y=(format!("{:.1}", 12.0 - h)) width="1.6" height=(format!("{h:.1}")) {}
                }
            }
        }
    }
}

/// The last 30 days by day, today included.
pub(crate) fn last_30_days() -> UsageRange {
    UsageRange::ending_at(Utc::now(), Duration::days(30), Granularity::Day)
}

/// The numbers behind the chart, the busy buckets only.
fn bucket_table(usage: &Usage) -> Markup {
    let format = match usage.range.granularity {
        Granularity::Hour => "%Y-%m-%d %H:00",
        Granularity::Day => "%Y-%m-%d",
    };
    html! {
        details {
            summary { "The numbers" }
            (table(&["From (UTC)", "Allowed", "Rate limited", "Missing scope", "Busiest minute"], html! {
                @for bucket in usage.buckets.iter().filter(|b| b.counts.requests() > 0) {
                    tr {
                        td { (bucket.start.format(format).to_string()) }
                        td { (bucket.counts.allowed) } td { (bucket.counts.rate_limited) }
                        td { (bucket.counts.insufficient_scope) } td { (bucket.counts.peak_per_minute) }
                    }
                }
            }))
        }
    }
}

/// `GET /settings/api-keys/{id}`
pub(crate) async fn show(
    state: web::Data<AppState>,
    who: SignedIn,
    id: web::Path<String>,
    query: web::Query<ViewQuery>,
) -> Result<HttpResponse, PageError> {
    let id = super::keys::key_id(&id)?;
    let now = Utc::now();
    let hours = query.view.as_deref() == Some("hours");
    let range = if hours {
        UsageRange::ending_at(now, Duration::days(7), Granularity::Hour)
    } else {
        last_30_days()
    };
    let found = state.auth.key_usage(who.user(), id, range).await.map_err(page_error)?;
    let (key, usage) = (&found.key, &found.usage);
    let events = state.auth.events(who.user().id, None, 100).await.map_err(page_error)?;
    let id_text = key.id.to_string();
    let unusual: Vec<_> = events
        .events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::ApiKeyNewNetwork | EventKind::ApiKeyRateLimited))
        .filter(|e| e.details.iter().any(|(k, v)| k == "api_key_id" && *v == id_text))
        .collect();
    let title = if hours {
        "Requests by hour, last 7 days"
    } else {
        "Requests by day, last 30 days"
    };
    let content = html! {
        div.page-head {
            h1 { (key.name) }
            p { code { (key.prefix()) "…" } " · " (key.status(now).as_str()) }
        }
        section.card aria-labelledby="usage-title" {
            h2 #usage-title { "Usage" }
            nav.tabs aria-label="Period" {
                a href="?view=days" aria-current=[(!hours).then_some("page")] { "30 days" }
                a href="?view=hours" aria-current=[hours.then_some("page")] { "7 days by hour" }
            }
            (bar_chart(usage, title))
            (bucket_table(usage))
        }
        section.card aria-labelledby="denials-title" {
            h2 #denials-title { "Refused requests" }
            dl.facts {
                dt { "Over the rate limit" } dd { (usage.totals.rate_limited) }
                dt { "Missing a scope" } dd { (usage.totals.insufficient_scope) }
                dt { "Plan limit" } dd { (usage.limit_per_minute) " requests a minute" }
            }
        }
        section.card aria-labelledby="last-title" {
            h2 #last-title { "Last use" }
            dl.facts {
                dt { "When" } dd { (when_or(key.last_used_at, "Never")) }
                dt { "From" } dd { (found.last_client.ip.as_deref().unwrap_or("—")) }
                dt { "Client" } dd { (found.last_client.user_agent.as_deref().unwrap_or("—")) }
            }
        }
        section.card aria-labelledby="unusual-title" {
            h2 #unusual-title { "Unusual use" }
            @if unusual.is_empty() {
                p.empty { "Nothing unusual: no new networks and no rate limit reached lately." }
            } @else {
                ul {
                    @for event in &unusual {
                        li {
                            (when(event.at)) " "
                            @if event.kind == EventKind::ApiKeyNewNetwork {
                                "Used from a new network: "
                                code { (event.details.iter().find(|(k, _)| k == "network").map_or("", |(_, v)| v.as_str())) }
                            } @else {
                                "Reached the rate limit for the first time that day."
                            }
                        }
                    }
                }
                p { "Not you? " a href=(format!("/settings/api-keys/{}/revoke", key.id)) { "Revoke this key" } " — it stops working at once." }
            }
        }
    };
    Ok(html(
        StatusCode::OK,
        app_page(&key.name, &who, Nav::ApiKeys, None, content),
    ))
}
