//! A local server that answers like GitHub's and Facebook's documented
//! OAuth endpoints (authorize, token, API), for the people a test scripts,
//! and records what it was sent.
//!
//! The authorization endpoints log in at once whoever `login=` names (the
//! code they hand back is that name), or answer `error=access_denied` for
//! `login=deny`. The token endpoints trade a scripted person's code for the
//! access token [`access_token`]`(code)`, and refuse any other code as the
//! provider does (GitHub with 200 and an `error`, Facebook with 400).

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// What the fake answers for one person; tests change it.
#[derive(Debug, Clone)]
pub struct Person {
    /// Status of the token endpoint for this person's code (200 answers a token).
    pub token_status: u16,
    /// GitHub's `/user`.
    pub user: Value,
    /// GitHub's `/user/emails`.
    pub emails: Value,
    /// Facebook's `/me`.
    pub me: Value,
}

impl Default for Person {
    /// The Octocat on GitHub (two verified addresses, the primary public),
    /// Mark Example on Facebook.
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
    /// Its path.
    pub path: String,
    /// Its form body, decoded (empty for a GET).
    pub form: HashMap<String, String>,
    /// Its query, decoded.
    pub query: HashMap<String, String>,
    /// Its `Authorization` header.
    pub authorization: Option<String>,
}

#[derive(Default)]
struct Shared {
    people: Mutex<HashMap<String, Person>>,
    seen: Mutex<Vec<Seen>>,
}

/// The running fake; stopped when dropped.
pub struct FakeGithubFacebook {
    /// `http://127.0.0.1:PORT`: GitHub's endpoints are `/login/oauth/authorize`,
    /// `/login/oauth/access_token` and `/api/…`, Facebook's `/dialog/oauth`,
    /// `/oauth/access_token` and `/graph/…`.
    pub base: String,
    shared: Arc<Shared>,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for FakeGithubFacebook {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

/// The access token the fake hands out for a person's `code`.
pub fn access_token(code: &str) -> String {
    format!("token-{code}")
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn params(text: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(text).into_owned().collect()
}

fn record(shared: &Shared, req: &HttpRequest, form: Option<&[u8]>) {
    lock(&shared.seen).push(Seen {
        path: req.path().to_owned(),
        form: form.map(params).unwrap_or_default(),
        query: params(req.query_string().as_bytes()),
        authorization: req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    });
}

async fn authorize(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    record(&shared, &req, None);
    let query = params(req.query_string().as_bytes());
    let (Some(redirect), Some(state)) = (query.get("redirect_uri"), query.get("state")) else {
        return HttpResponse::BadRequest().body("redirect_uri and state are required");
    };
    let state: String = url::form_urlencoded::byte_serialize(state.as_bytes()).collect();
    let location = match query.get("login").map(String::as_str) {
        Some("deny") => format!("{redirect}?error=access_denied&state={state}"),
        Some(login) => format!("{redirect}?code={login}&state={state}"),
        None => return HttpResponse::BadRequest().body("name the test user with login="),
    };
    HttpResponse::Found().insert_header(("location", location)).finish()
}

async fn token(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    record(&shared, &req, Some(&body));
    let code = params(&body).remove("code").unwrap_or_default();
    let status = lock(&shared.people).get(&code).map(|p| p.token_status);
    match status {
        Some(200) => HttpResponse::Ok().json(json!({"access_token": access_token(&code), "token_type": "bearer"})),
        Some(status) => {
            let status =
                actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY);
            HttpResponse::build(status).body("oops")
        }
        // GitHub refuses with 200 and an `error`; Facebook with 400 and an error object.
        None if req.path().starts_with("/login") => HttpResponse::Ok().json(json!({
            "error": "bad_verification_code",
            "error_description": "The code passed is incorrect or expired."
        })),
        None => HttpResponse::BadRequest().json(json!({
            "error": {"message": "Invalid verification code format.", "type": "OAuthException", "code": 100}
        })),
    }
}

async fn api(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    record(&shared, &req, None);
    let code = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer token-"))
        .unwrap_or_default();
    let Some(person) = lock(&shared.people).get(code).cloned() else {
        return HttpResponse::Unauthorized().json(json!({"message": "Bad credentials"}));
    };
    match req.path() {
        "/api/user" => HttpResponse::Ok().json(person.user),
        "/api/user/emails" => HttpResponse::Ok().json(person.emails),
        "/graph/me" => HttpResponse::Ok().json(person.me),
        _ => HttpResponse::NotFound().finish(),
    }
}

impl FakeGithubFacebook {
    /// Starts the fake on a free port of 127.0.0.1, in the current tokio
    /// runtime, with `people` (code and what it answers).
    ///
    /// # Panics
    /// When no port can be bound.
    pub async fn start(people: impl IntoIterator<Item = (&str, Person)>) -> Self {
        let shared = Arc::new(Shared::default());
        lock(&shared.people).extend(people.into_iter().map(|(code, p)| (code.to_owned(), p)));
        let data = web::Data::from(Arc::clone(&shared));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/login/oauth/authorize", web::get().to(authorize))
                .route("/dialog/oauth", web::get().to(authorize))
                .route("/login/oauth/access_token", web::post().to(token))
                .route("/oauth/access_token", web::post().to(token))
                .route("/api/{tail:.*}", web::get().to(api))
                .route("/graph/{tail:.*}", web::get().to(api))
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("no free port on 127.0.0.1: {e}"));
        let base = format!("http://{}", server.addrs()[0]);
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Self { base, shared, handle }
    }

    /// The requests received at `path`, oldest first.
    pub fn seen(&self, path: &str) -> Vec<Seen> {
        lock(&self.shared.seen)
            .iter()
            .filter(|s| s.path == path)
            .cloned()
            .collect()
    }

    /// Changes what the person with `code` answers from now on.
    ///
    /// # Panics
    /// When the fake was started without that person.
    pub fn change(&self, code: &str, change: impl FnOnce(&mut Person)) {
        let mut people = lock(&self.shared.people);
        let person = people
            .get_mut(code)
            .unwrap_or_else(|| panic!("the fake knows no {code:?}"));
        change(person);
    }
}
