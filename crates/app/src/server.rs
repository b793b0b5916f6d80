//! The server: the adapters composed, both route tables (the JSON API and
//! the pages) mounted, and the background jobs started.

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use convosphere_service::config::Config;
use convosphere_service::state::{open_store, AppState, StartError};
use std::net::SocketAddr;

/// A running server.
pub struct Started {
    /// The address it listens on (useful with port 0).
    pub addr: SocketAddr,
    /// Where `/metrics` is served when `AUTH_METRICS_BIND` is set; the
    /// listener runs until the process ends.
    pub metrics_addr: Option<SocketAddr>,
    /// The server future; await it to serve until SIGTERM/SIGINT.
    pub server: Server,
    /// The shared state (to drain mail after the server stops).
    pub state: web::Data<AppState>,
}

/// Migrates the database, builds the adapters and binds the listener.
pub async fn start(config: Config) -> Result<Started, StartError> {
    let store = open_store(&config).await?;
    store
        .migrate()
        .await
        .map_err(|e| StartError(format!("AUTH_DATABASE_URL: migration failed: {e}")))?;
    let (bind, metrics_bind) = (config.bind, config.metrics_bind);
    let state = web::Data::new(AppState::build(config, store).await?);
    convosphere_cache::spawn_invalidation_poller(state.store.clone(), state.credentials.clone()).await;
    let flusher = state.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(convosphere_service::usage::FLUSH_INTERVAL).await;
            flusher.usage.flush(&flusher.auth).await;
        }
    });
    spawn_purger(state.clone());
    let metrics_addr = match metrics_bind {
        Some(addr) => Some(serve_metrics(state.clone(), addr)?),
        None => None,
    };
    let app_state = state.clone();
    let server = HttpServer::new(move || {
        let app = App::new().app_data(app_state.clone());
        let app = match metrics_addr {
            Some(_) => app,
            None => app.configure(convosphere_api::routes::configure_metrics),
        };
        app.configure(convosphere_api::routes::configure)
            .configure(convosphere_pages::configure)
            .default_service(web::to(convosphere_api::routes::not_found))
            .wrap(convosphere_api::middleware::Observe)
    })
    .bind(bind)
    .map_err(|e| StartError(format!("AUTH_BIND: cannot listen on {bind}: {e}")))?;
    let addr = server.addrs().first().copied().unwrap_or(bind);
    let server = server.shutdown_timeout(30).run();
    tracing::info!(%addr, "listening");
    Ok(Started {
        addr,
        metrics_addr,
        server,
        state,
    })
}

/// Serves `/metrics` alone on `addr` (a private network, a sidecar's port),
/// with one worker: a scrape is a few requests a minute.
fn serve_metrics(state: web::Data<AppState>, addr: SocketAddr) -> Result<SocketAddr, StartError> {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(convosphere_api::routes::configure_metrics)
            .default_service(web::to(convosphere_api::routes::not_found))
    })
    .workers(1)
    .bind(addr)
    .map_err(|e| StartError(format!("AUTH_METRICS_BIND: cannot listen on {addr}: {e}")))?;
    let bound = server.addrs().first().copied().unwrap_or(addr);
    tokio::spawn(server.disable_signals().run());
    tracing::info!(addr = %bound, "metrics listening");
    Ok(bound)
}

/// How often expired rows are deleted.
const PURGE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Deletes, every hour, what no rule reads any more: sessions and one-time
/// tokens a day past their end, old invalidations, security events older
/// than `AUTH_AUDIT_RETENTION` and usage older than `AUTH_USAGE_RETENTION`. Every instance may run it: deletes
/// of the same rows do not conflict.
fn spawn_purger(state: web::Data<AppState>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(PURGE_INTERVAL).await;
            let now = chrono::Utc::now();
            let store = &state.store;
            match store.purge_expired(now - chrono::Duration::days(1)).await {
                Ok(purged) => tracing::info!(?purged, "purged expired rows"),
                Err(error) => tracing::warn!(%error, "purging expired rows failed"),
            }
            let cutoff = |retention| now.checked_sub_signed(chrono::Duration::from_std(retention).ok()?);
            if let Some(cutoff) = cutoff(state.config.audit_retention) {
                match store.purge_events(cutoff).await {
                    Ok(events) => tracing::info!(events, "purged security events past their retention"),
                    Err(error) => tracing::warn!(%error, "purging security events failed"),
                }
            }
            if let Some(cutoff) = cutoff(state.config.usage_retention) {
                match state.auth.prune_usage(cutoff).await {
                    Ok(rows) => tracing::info!(rows, "purged usage past its retention"),
                    Err(error) => tracing::warn!(%error, "purging usage failed"),
                }
            }
        }
    });
}
