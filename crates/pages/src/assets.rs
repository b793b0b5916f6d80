//! The stylesheet, script and icon, embedded in the binary. Their URLs
//! carry a hash of their content, so browsers may cache them for a day and
//! still see a new build at once.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");
const ICON: &str = include_str!("assets/icon.svg");

/// FNV-1a, computed at compile time: a cache-busting version, not a MAC.
const fn fnv1a(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u32;
        hash = hash.wrapping_mul(0x0100_0193);
        i += 1;
    }
    hash
}

const VERSION: u32 = fnv1a(CSS.as_bytes()) ^ fnv1a(JS.as_bytes()).rotate_left(11) ^ fnv1a(ICON.as_bytes());

/// The URL of an embedded asset.
pub(crate) fn href(name: &str) -> String {
    format!("/assets/{name}?v={VERSION:08x}")
}

/// `GET /assets/{name}`
pub(crate) async fn serve(name: web::Path<String>) -> HttpResponse {
    let (content_type, body) = match name.as_str() {
        "app.css" => ("text/css; charset=utf-8", CSS),
        "app.js" => ("text/javascript; charset=utf-8", JS),
        "icon.svg" => ("image/svg+xml", ICON),
        _ => return HttpResponse::NotFound().finish(),
    };
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(body)
}
