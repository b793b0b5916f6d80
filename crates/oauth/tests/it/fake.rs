//! A local server that answers like GitHub's and Facebook's documented
//! endpoints, and records what it was sent.

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What the fake answers; tests change it.
pub struct Script {
    /// Status of the token endpoint (200 answers a token).
    pub token_status: u16,
    /// GitHub's `/user`.
    pub user: Value,
    /// GitHub's `/user/emails`.
    pub emails: Value,
    /// Facebook's `/me`.
    pub me: Value,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            token_status: 200,
            user: json!({"id": 583231, "login": "octocat", "name": "The Octocat"}),
            emails: json!([
                {"email": "octocat@github.example", "primary": false, "verified": true, "visibility": null},
                {"email": "octo@example.com", "primary": true, "verified": true, "visibility": "public"},
            ]),
            me: json!({"id": "10158", "name": "Mark Example", "email": "mark@example.com"}),
        }
    }
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub form: HashMap<String, String>,
    pub query: HashMap<String, String>,
    pub authorization: Option<String>,
}

#[derive(Default)]
pub struct Shared {
    pub script: Mutex<Script>,
    pub seen: Mutex<Vec<Seen>>,
}

pub struct FakeProvider {
    pub base: String,
    pub shared: Arc<Shared>,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

/// The access token the fake hands out for the code `good-code`.
pub const ACCESS_TOKEN: &str = "fake-access-token";

fn record(shared: &Shared, req: &HttpRequest, form: Option<&[u8]>) {
    let parse = |bytes: &[u8]| url::form_urlencoded::parse(bytes).into_owned().collect();
    shared.seen.lock().unwrap().push(Seen {
        path: req.path().to_owned(),
        form: form.map(parse).unwrap_or_default(),
        query: parse(req.query_string().as_bytes()),
        authorization: req
            .headers()
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned()),
    });
}

fn authorized(req: &HttpRequest) -> bool {
    req.headers()
        .get("authorization")
        .is_some_and(|v| v.to_str().unwrap() == format!("Bearer {ACCESS_TOKEN}"))
}

async fn token(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    record(&shared, &req, Some(&body));
    let status = shared.script.lock().unwrap().token_status;
    if status != 200 {
        return HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).body("oops");
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let github = req.path().starts_with("/login");
    match form.get("code").map(String::as_str) {
        Some("good-code") => HttpResponse::Ok().json(json!({"access_token": ACCESS_TOKEN, "token_type": "bearer"})),
        // GitHub refuses with 200 and an `error`; Facebook with 400 and an error object.
        _ if github => HttpResponse::Ok().json(json!({
            "error": "bad_verification_code",
            "error_description": "The code passed is incorrect or expired."
        })),
        _ => HttpResponse::BadRequest().json(json!({
            "error": {"message": "Invalid verification code format.", "type": "OAuthException", "code": 100}
        })),
    }
}

async fn api(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    record(&shared, &req, None);
    if !authorized(&req) {
        return HttpResponse::Unauthorized().json(json!({"message": "Bad credentials"}));
    }
    let script = shared.script.lock().unwrap();
    match req.path() {
        "/api/user" => HttpResponse::Ok().json(&script.user),
        "/api/user/emails" => HttpResponse::Ok().json(&script.emails),
        "/graph/me" => HttpResponse::Ok().json(&script.me),
        _ => HttpResponse::NotFound().finish(),
    }
}

impl FakeProvider {
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let data = web::Data::from(shared.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/login/oauth/access_token", web::post().to(token))
                .route("/oauth/access_token", web::post().to(token))
                .route("/api/{tail:.*}", web::get().to(api))
                .route("/graph/{tail:.*}", web::get().to(api))
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
        let base = format!("http://{}", server.addrs()[0]);
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Self { base, shared, handle }
    }

    pub fn seen(&self, path: &str) -> Vec<Seen> {
        self.shared
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path == path)
            .cloned()
            .collect()
    }

    pub fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.shared.script.lock().unwrap()
    }
}
