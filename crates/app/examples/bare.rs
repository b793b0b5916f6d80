//! The baseline of the HTTP benchmarks: a bare actix-web handler with the
//! same runtime and worker count as the service, answering a small JSON body.
//!
//! `cargo run --release --example bare -- 127.0.0.1:8090`

use actix_web::{web, App, HttpResponse, HttpServer};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let bind = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8090".into());
    HttpServer::new(|| {
        App::new().route(
            "/",
            web::get().to(|| async { HttpResponse::Ok().json(serde_json::json!({"status": "ok"})) }),
        )
    })
    .bind(bind)?
    .run()
    .await
}
