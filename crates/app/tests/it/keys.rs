//! API keys, the gateway check `/v1/authz` and the per-plan rate limits.

use super::harness::*;
use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::Response;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, Instant};

const ALL_SCOPES: [&str; 10] = [
    "agents:read",
    "agents:write",
    "chat:read",
    "chat:write",
    "knowledge:read",
    "knowledge:write",
    "integrations:read",
    "integrations:write",
    "webhooks:read",
    "webhooks:write",
];

fn s(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key} in {v}"))
        .to_owned()
}

fn header(response: &Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header on {} {}", response.status(), response.url()))
        .to_str()
        .unwrap()
        .to_owned()
}

fn number_header(response: &Response, name: &str) -> u64 {
    let value = header(response, name);
    value
        .parse()
        .unwrap_or_else(|_| panic!("{name}: {value} is not a whole number of seconds or requests"))
}

fn set(values: &Value) -> BTreeSet<String> {
    values
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {values}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

fn strings(values: &[&str]) -> BTreeSet<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap()
        .with_timezone(&Utc)
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A verified user, logged in: the access token.
async fn user(app: &TestApp, email: &str) -> String {
    app.verified_user(email).await;
    s(&app.tokens(email).await, "access_token")
}

async fn create_key(app: &TestApp, token: &str, body: Value) -> Response {
    app.post_auth("/v1/api-keys", token, body).await
}

async fn list_keys(app: &TestApp, token: &str) -> Vec<Value> {
    let response = app.get_auth("/v1/api-keys", token).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["api_keys"].as_array().unwrap().clone()
}

async fn get_key(app: &TestApp, token: &str, id: &str) -> Value {
    let response = app.get_auth(&format!("/v1/api-keys/{id}"), token).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn delete_auth(app: &TestApp, path: &str, token: &str) -> Response {
    app.client
        .delete(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn authz(app: &TestApp, credential: &str, query: &str) -> Response {
    app.get_auth(&format!("/v1/authz{query}"), credential).await
}

/// Asks `attempt` every 100 ms until it gives `Some`, for at most `limit`.
async fn poll<T, F, Fut>(limit: Duration, what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The checksum of contract §5: CRC32 (IEEE) of `body`, 6 base62 characters.
fn checksum(body: &str) -> String {
    const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut crc = !0u32;
    for byte in body.bytes() {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    let mut n = !crc;
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(out.to_vec()).unwrap()
}

/// `key` with the character at `at` replaced by another base62 character.
fn flip(key: &str, at: usize) -> String {
    let mut chars: Vec<char> = key.chars().collect();
    chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

// ---------------------------------------------------------------- managing keys

async fn a_new_key_is_shown_once_with_its_prefix(app: TestApp) {
    let access = user(&app, "ada@example.com").await;
    let response = create_key(
        &app,
        &access,
        json!({"name": "CI deploys", "scopes": ["chat:write", "agents:read"]}),
    )
    .await;
    assert_eq!(response.status(), 201);
    assert_eq!(header(&response, "cache-control"), "no-store");
    let created: Value = response.json().await.unwrap();
    let key = s(&created, "key");
    assert_eq!(key.len(), 50, "{key}");
    assert!(key.starts_with("cs_"), "{key}");
    assert_eq!(&key[11..12], "_", "{key}");
    assert!(key[3..11].bytes().all(|b| b.is_ascii_alphanumeric()), "{key}");
    assert!(key[12..].bytes().all(|b| b.is_ascii_alphanumeric()), "{key}");
    assert_eq!(
        checksum(&key[..44]),
        key[44..],
        "the last 6 characters are the CRC32 of the rest"
    );
    assert_eq!(s(&created, "prefix"), key[..11]);
    assert!(uuid::Uuid::parse_str(&s(&created, "id")).is_ok(), "{created}");
    assert_eq!(created["name"], "CI deploys");
    assert_eq!(set(&created["scopes"]), strings(&["agents:read", "chat:write"]));
    assert_eq!(created["status"], "active");
    let created_at = time(&created["created_at"]);
    assert!((Utc::now() - created_at).num_seconds().abs() < 60, "{created_at}");
    assert!(created["expires_at"].is_null() && created["last_used_at"].is_null());
    assert!(created["revoked_at"].is_null());

    // Never shown again.
    let fetched = get_key(&app, &access, &s(&created, "id")).await;
    assert!(fetched.get("key").is_none(), "{fetched}");
    for field in ["id", "name", "prefix", "scopes", "status", "created_at", "expires_at"] {
        assert_eq!(fetched[field], created[field], "{field}");
    }
    assert!(
        !fetched.to_string().contains(&key[12..44]),
        "the secret leaked: {fetched}"
    );

    // A second key is a different key; an expiry is kept.
    let expires_at = Utc::now() + chrono::Duration::days(30);
    let response = create_key(
        &app,
        &access,
        json!({"name": "expiring", "scopes": ["webhooks:read"], "expires_at": rfc3339(expires_at)}),
    )
    .await;
    assert_eq!(response.status(), 201);
    let second: Value = response.json().await.unwrap();
    assert_ne!(second["key"], created["key"]);
    assert_ne!(second["prefix"], created["prefix"]);
    assert_ne!(second["id"], created["id"]);
    assert!((time(&second["expires_at"]) - expires_at).num_seconds().abs() <= 1);
    // A name of exactly 100 characters is fine.
    app.new_key(&access, &"n".repeat(100), &["chat:read"]).await;
}

async fn key_input_is_validated(app: TestApp) {
    let access = user(&app, "ada@example.com").await;
    let past = rfc3339(Utc::now() - chrono::Duration::minutes(1));
    let cases = [
        (json!({"name": "", "scopes": ["chat:read"]}), "name"),
        (json!({"name": "   ", "scopes": ["chat:read"]}), "name"),
        (json!({"scopes": ["chat:read"]}), "name"),
        (json!({"name": "n".repeat(101), "scopes": ["chat:read"]}), "name"),
        (json!({"name": "k", "scopes": []}), "scopes"),
        (json!({"name": "k"}), "scopes"),
        (json!({"name": "k", "scopes": ["chat:read", "chat:admin"]}), "scopes"),
        (json!({"name": "k", "scopes": ["CHAT:READ"]}), "scopes"),
        (
            json!({"name": "k", "scopes": ["chat:read"], "expires_at": past}),
            "expires_at",
        ),
        (
            json!({"name": "k", "scopes": ["chat:read"], "expires_at": "next tuesday"}),
            "expires_at",
        ),
    ];
    for (body, field) in cases {
        let response = create_key(&app, &access, body.clone()).await;
        let answer = problem(response, 422, "validation_failed").await;
        let errors = answer["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors: {answer}"));
        let fields: Vec<&str> = errors.iter().map(|e| e["field"].as_str().unwrap()).collect();
        assert_eq!(fields, [field], "{body} gave {answer}");
        assert!(
            errors[0]["code"].is_string() && errors[0]["message"].is_string(),
            "{answer}"
        );
    }
    // Every problem at once.
    for body in [
        json!({"name": "", "scopes": [], "expires_at": past}),
        json!({"name": "", "scopes": ["nope"], "expires_at": "soon"}),
    ] {
        let response = create_key(&app, &access, body.clone()).await;
        let answer = problem(response, 422, "validation_failed").await;
        let fields: BTreeSet<String> = answer["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| s(e, "field"))
            .collect();
        assert_eq!(
            fields,
            strings(&["expires_at", "name", "scopes"]),
            "{body} gave {answer}"
        );
    }
    // The wrong JSON types are a malformed request.
    let response = create_key(&app, &access, json!({"name": "k", "scopes": "chat:read"})).await;
    problem(response, 400, "invalid_request").await;
    // Nothing was made.
    assert!(list_keys(&app, &access).await.is_empty());
}

async fn keys_are_listed_newest_first_without_the_key(app: TestApp) {
    let access = user(&app, "ada@example.com").await;
    let mut created = Vec::new();
    for name in ["first", "second", "third"] {
        created.push(app.new_key(&access, name, &["chat:read"]).await);
    }
    let listed = list_keys(&app, &access).await;
    let names: Vec<String> = listed.iter().map(|k| s(k, "name")).collect();
    assert_eq!(names, ["third", "second", "first"]);
    for (listed, created) in listed.iter().zip(created.iter().rev()) {
        assert!(listed.get("key").is_none(), "{listed}");
        assert_eq!(listed["id"], created["id"]);
        assert_eq!(listed["prefix"], created["prefix"]);
        assert_eq!(listed["status"], "active");
    }
    // Another user sees none of them.
    let bob = user(&app, "bob@example.com").await;
    assert!(list_keys(&app, &bob).await.is_empty());
}

async fn another_users_key_is_not_found(app: TestApp) {
    let ada = user(&app, "ada@example.com").await;
    let bob = user(&app, "bob@example.com").await;
    let key = app.new_key(&ada, "ada's", &["chat:read"]).await;
    let id = s(&key, "id");
    let path = format!("/v1/api-keys/{id}");
    problem(app.get_auth(&path, &bob).await, 404, "not_found").await;
    problem(delete_auth(&app, &path, &bob).await, 404, "not_found").await;
    problem(
        app.post_auth(&format!("{path}/rotate"), &bob, json!({})).await,
        404,
        "not_found",
    )
    .await;
    // Bob's attempts changed nothing.
    assert_eq!(get_key(&app, &ada, &id).await["status"], "active");
    assert_eq!(authz(&app, &s(&key, "key"), "").await.status(), 200);

    let unknown = uuid::Uuid::new_v4();
    for id in [unknown.to_string(), "not-a-uuid".to_owned(), "123".to_owned()] {
        let path = format!("/v1/api-keys/{id}");
        problem(app.get_auth(&path, &ada).await, 404, "not_found").await;
        problem(delete_auth(&app, &path, &ada).await, 404, "not_found").await;
        problem(
            app.post_auth(&format!("{path}/rotate"), &ada, json!({})).await,
            404,
            "not_found",
        )
        .await;
    }
}

// ---------------------------------------------------------------- using keys

async fn a_key_acts_for_its_owner_with_its_scopes(app: TestApp) {
    let pair = {
        app.verified_user("ada@example.com").await;
        app.tokens("ada@example.com").await
    };
    let access = s(&pair, "access_token");
    let user_id = s(&pair["user"], "id");
    let created = app.new_key(&access, "reader", &["chat:read", "knowledge:read"]).await;

    let response = app.get_auth("/v1/me", &s(&created, "key")).await;
    assert_eq!(response.status(), 200);
    let me: Value = response.json().await.unwrap();
    assert_eq!(s(&me["user"], "id"), user_id);
    assert_eq!(me["user"]["email"], "ada@example.com");
    assert_eq!(me["principal"]["type"], "api_key");
    assert_eq!(me["principal"]["api_key_id"], created["id"]);
    assert_eq!(
        set(&me["principal"]["scopes"]),
        strings(&["chat:read", "knowledge:read"])
    );
    assert!(me["principal"]["session_id"].is_null(), "{me}");

    // The access token of the same user: every scope, its session.
    let me: Value = app.get_auth("/v1/me", &access).await.json().await.unwrap();
    assert_eq!(me["principal"]["type"], "user");
    assert_eq!(set(&me["principal"]["scopes"]), strings(&ALL_SCOPES));
    assert_eq!(me["principal"]["session_id"], pair["session_id"]);
    assert!(me["principal"]["api_key_id"].is_null(), "{me}");
}

async fn authz_checks_the_scopes_of_the_credential(app: TestApp) {
    let pair = {
        app.verified_user("ada@example.com").await;
        app.tokens("ada@example.com").await
    };
    let access = s(&pair, "access_token");
    let user_id = s(&pair["user"], "id");
    let key = s(
        &app.new_key(&access, "gateway", &["chat:read", "agents:read"]).await,
        "key",
    );

    let response = authz(&app, &key, "?scope=chat:read").await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-auth-user-id"), user_id);
    assert_eq!(header(&response, "x-auth-plan"), "free");
    let scopes = header(&response, "x-auth-scopes");
    let held: BTreeSet<String> = scopes.split(' ').map(str::to_owned).collect();
    assert_eq!(held, strings(&["agents:read", "chat:read"]), "X-Auth-Scopes: {scopes}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(s(&body, "user_id"), user_id);
    assert_eq!(body["principal"], "api_key");
    assert_eq!(body["plan"], "free");
    assert_eq!(set(&body["scopes"]), strings(&["agents:read", "chat:read"]));

    // No scope asked: the credential is merely checked. Several: all are needed.
    assert_eq!(authz(&app, &key, "").await.status(), 200);
    assert_eq!(
        authz(&app, &key, "?scope=chat:read&scope=agents:read").await.status(),
        200
    );
    assert_eq!(authz(&app, &key, "?scope=chat:read%20agents:read").await.status(), 200);

    for (query, missing) in [
        ("?scope=chat:write", "chat:write"),
        ("?scope=chat:read&scope=agents:write", "agents:write"),
        ("?scope=agents:write&scope=chat:read", "agents:write"),
        ("?scope=webhooks:write&scope=agents:read", "webhooks:write"),
    ] {
        let response = authz(&app, &key, query).await;
        let challenge = header(&response, "www-authenticate");
        assert!(challenge.starts_with("Bearer"), "{challenge}");
        assert!(challenge.contains(r#"error="insufficient_scope""#), "{challenge}");
        assert!(
            challenge.contains(&format!(r#"scope="{missing}""#)),
            "{query}: {challenge}"
        );
        problem(response, 403, "insufficient_scope").await;
    }

    // A user access token holds every scope.
    let every: String = ALL_SCOPES.iter().map(|scope| format!("scope={scope}&")).collect();
    let response = authz(&app, &access, &format!("?{every}")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-auth-user-id"), user_id);
    let held: BTreeSet<String> = header(&response, "x-auth-scopes")
        .split(' ')
        .map(str::to_owned)
        .collect();
    assert_eq!(held, strings(&ALL_SCOPES));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["principal"], "user");
    assert_eq!(set(&body["scopes"]), strings(&ALL_SCOPES));

    // A scope that does not exist is a malformed request, for keys and users alike.
    for credential in [&key, &access] {
        problem(
            authz(&app, credential, "?scope=chat:admin").await,
            400,
            "invalid_request",
        )
        .await;
        problem(
            authz(&app, credential, "?scope=chat:read&scope=nonsense").await,
            400,
            "invalid_request",
        )
        .await;
    }
}

async fn bad_keys_are_refused_with_their_reason(app: TestApp) {
    let access = user(&app, "ada@example.com").await;
    let key = s(&app.new_key(&access, "k", &["chat:read"]).await, "key");
    assert_eq!(authz(&app, &key, "").await.status(), 200);

    // No credential at all.
    let response = app.client.get(app.url("/v1/authz")).send().await.unwrap();
    assert!(header(&response, "www-authenticate").starts_with("Bearer"));
    problem(response, 401, "missing_credentials").await;

    let public_id = &key[3..11];
    let other_secret: String = key[12..44].chars().rev().collect();
    let forged_body = format!("cs_{public_id}_{other_secret}");
    let forged = format!("{forged_body}{}", checksum(&forged_body));
    let unknown_body = format!("cs_{}_{}", "ZZZZZZZZ", &key[12..44]);
    let unknown = format!("{unknown_body}{}", checksum(&unknown_body));
    for bad in [
        flip(&key, 47),       // a checksum character
        flip(&key, 20),       // a secret character (the checksum no longer matches)
        flip(&key, 5),        // a public id character
        forged,               // right id, wrong secret, valid checksum
        unknown,              // an id that does not exist, valid checksum
        key[..49].to_owned(), // too short
        format!("{key}x"),    // too long
    ] {
        assert_ne!(bad, key);
        let response = authz(&app, &bad, "").await;
        let challenge = header(&response, "www-authenticate");
        assert!(challenge.starts_with("Bearer"), "{challenge}");
        assert!(challenge.contains(r#"error="invalid_token""#), "{challenge}");
        problem(response, 401, "invalid_api_key").await;
        problem(app.get_auth("/v1/me", &bad).await, 401, "invalid_api_key").await;
    }
    // The real key is not harmed by the attempts.
    assert_eq!(authz(&app, &key, "?scope=chat:read").await.status(), 200);
}

async fn a_revoked_key_is_refused_at_once(app: TestApp) {
    let access = user(&app, "ada@example.com").await;
    let created = app.new_key(&access, "k", &["chat:read"]).await;
    let (id, key) = (s(&created, "id"), s(&created, "key"));
    let other = s(&app.new_key(&access, "other", &["chat:read"]).await, "key");
    // Used (and so remembered by any cache) before the revocation.
    assert_eq!(authz(&app, &key, "").await.status(), 200);
    assert_eq!(app.get_auth("/v1/me", &key).await.status(), 200);

    let response = delete_auth(&app, &format!("/v1/api-keys/{id}"), &access).await;
    assert_eq!(response.status(), 204);
    let response = authz(&app, &key, "?scope=chat:read").await;
    assert!(header(&response, "www-authenticate").contains(r#"error="invalid_token""#));
    problem(response, 401, "api_key_revoked").await;
    problem(app.get_auth("/v1/me", &key).await, 401, "api_key_revoked").await;

    let listed = get_key(&app, &access, &id).await;
    assert_eq!(listed["status"], "revoked");
    let revoked_at = time(&listed["revoked_at"]);
    assert!((Utc::now() - revoked_at).num_seconds().abs() < 60);
    // A revoked key stays revoked and cannot be rotated back to life.
    problem(
        app.post_auth(&format!("/v1/api-keys/{id}/rotate"), &access, json!({}))
            .await,
        404,
        "not_found",
    )
    .await;
    // The other key of the same user is untouched.
    assert_eq!(authz(&app, &other, "").await.status(), 200);
}

/// Every worker thread remembers the credentials it checked lately: each
/// of them must forget a key at its revocation and a token at its logout.
async fn credentials_remembered_by_every_worker_end_at_once(app: TestApp) {
    let access = user(&app, "ada@example.com").await;
    let created = app.new_key(&access, "k", &["chat:read"]).await;
    let (id, key) = (s(&created, "id"), s(&created, "key"));
    let statuses = |credential: String, path: &'static str| {
        let app = &app;
        async move {
            // Parallel requests on new connections reach every worker.
            let answers = futures_util::future::join_all((0..16).map(|_| {
                let credential = credential.clone();
                async move {
                    let client = reqwest::Client::new();
                    let response = client.get(app.url(path)).bearer_auth(&credential).send().await.unwrap();
                    response.status().as_u16()
                }
            }))
            .await;
            answers
        }
    };
    for _ in 0..3 {
        assert!(statuses(key.clone(), "/v1/authz").await.iter().all(|&s| s == 200));
        assert!(statuses(access.clone(), "/v1/authz").await.iter().all(|&s| s == 200));
    }
    assert_eq!(
        delete_auth(&app, &format!("/v1/api-keys/{id}"), &access).await.status(),
        204
    );
    assert_eq!(statuses(key.clone(), "/v1/authz").await, vec![401; 16]);
    assert_eq!(app.post_auth("/v1/auth/logout", &access, json!({})).await.status(), 204);
    assert_eq!(statuses(access.clone(), "/v1/authz").await, vec![401; 16]);
}

async fn every_instance_honours_a_revocation_even_just_after_its_start(app: TestApp) {
    let access = user(&app, "ada@example.com").await;
    let created = app.new_key(&access, "k", &["chat:read"]).await;
    let key = s(&created, "key");
    // A second instance starts and at once serves (and remembers) the key...
    let replica = app.replica(&[]).await;
    assert_eq!(authz(&replica, &key, "?scope=chat:read").await.status(), 200);
    // ...which is revoked through the first instance straight away.
    let response = delete_auth(&app, &format!("/v1/api-keys/{}", s(&created, "id")), &access).await;
    assert_eq!(response.status(), 204);
    problem(authz(&app, &key, "").await, 401, "api_key_revoked").await;
    let (replica_ref, key_ref) = (&replica, &key);
    let response = poll(
        Duration::from_secs(1),
        "the revocation on the replica",
        move || async move {
            let response = authz(replica_ref, key_ref, "?scope=chat:read").await;
            (response.status() != 200).then_some(response)
        },
    )
    .await;
    problem(response, 401, "api_key_revoked").await;
}

async fn rotation_replaces_a_key_with_a_new_one(app: TestApp) {
    let access = user(&app, "ada@example.com").await;
    let old = app.new_key(&access, "deploys", &["agents:write", "chat:read"]).await;
    let old_key = s(&old, "key");
    assert_eq!(authz(&app, &old_key, "?scope=agents:write").await.status(), 200);

    // Without a body, as `curl -X POST` would.
    let response = app
        .client
        .post(app.url(&format!("/v1/api-keys/{}/rotate", s(&old, "id"))))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(header(&response, "cache-control"), "no-store");
    let new: Value = response.json().await.unwrap();
    let new_key_text = s(&new, "key");
    assert_eq!(new_key_text.len(), 50);
    assert_eq!(s(&new, "prefix"), new_key_text[..11]);
    assert_ne!(new["id"], old["id"]);
    assert_ne!(new_key_text, old_key);
    assert_eq!(new["name"], "deploys");
    assert_eq!(set(&new["scopes"]), set(&old["scopes"]));
    assert_eq!(new["status"], "active");

    problem(authz(&app, &old_key, "").await, 401, "api_key_revoked").await;
    let response = authz(&app, &new_key_text, "?scope=agents:write").await;
    assert_eq!(response.status(), 200);
    let me: Value = app.get_auth("/v1/me", &new_key_text).await.json().await.unwrap();
    assert_eq!(me["principal"]["api_key_id"], new["id"]);

    let listed = list_keys(&app, &access).await;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["id"], new["id"]);
    assert_eq!(listed[0]["status"], "active");
    assert_eq!(listed[1]["id"], old["id"]);
    assert_eq!(listed[1]["status"], "revoked");

    // The same key rotated twice: the second time it is gone.
    problem(
        app.post_auth(&format!("/v1/api-keys/{}/rotate", s(&old, "id")), &access, json!({}))
            .await,
        404,
        "not_found",
    )
    .await;

    // An expiry may be given; it must lie in the future.
    let path = format!("/v1/api-keys/{}/rotate", s(&new, "id"));
    let past = rfc3339(Utc::now() - chrono::Duration::seconds(5));
    let response = app.post_auth(&path, &access, json!({"expires_at": past})).await;
    let body = problem(response, 422, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "expires_at");
    // A refused rotation leaves the key working.
    assert_eq!(authz(&app, &new_key_text, "").await.status(), 200);
    let expires_at = Utc::now() + chrono::Duration::days(7);
    let response = app
        .post_auth(&path, &access, json!({"expires_at": rfc3339(expires_at)}))
        .await;
    assert_eq!(response.status(), 201);
    let third: Value = response.json().await.unwrap();
    assert!((time(&third["expires_at"]) - expires_at).num_seconds().abs() <= 1);
    assert_eq!(third["name"], "deploys");
    problem(authz(&app, &new_key_text, "").await, 401, "api_key_revoked").await;
    assert_eq!(authz(&app, &s(&third, "key"), "").await.status(), 200);
}

async fn an_expired_key_is_refused(app: TestApp) {
    let access = user(&app, "ada@example.com").await;
    let expires_at = Utc::now() + chrono::Duration::seconds(2);
    let response = create_key(
        &app,
        &access,
        json!({"name": "short-lived", "scopes": ["chat:read"], "expires_at": rfc3339(expires_at)}),
    )
    .await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    let key = s(&created, "key");
    assert_eq!(authz(&app, &key, "").await.status(), 200);

    let wait = (expires_at - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(300);
    tokio::time::sleep(wait).await;
    let response = authz(&app, &key, "?scope=chat:read").await;
    assert!(header(&response, "www-authenticate").contains(r#"error="invalid_token""#));
    problem(response, 401, "api_key_expired").await;
    problem(app.get_auth("/v1/me", &key).await, 401, "api_key_expired").await;
    let listed = list_keys(&app, &access).await;
    assert_eq!(listed[0]["id"], created["id"]);
    assert_eq!(listed[0]["status"], "expired");
    assert!(listed[0]["revoked_at"].is_null());
    assert_eq!(get_key(&app, &access, &s(&created, "id")).await["status"], "expired");
}

async fn a_key_cannot_act_as_a_logged_in_user(app: TestApp) {
    let access = user(&app, "ada@example.com").await;
    let created = app.new_key(&access, "k", &ALL_SCOPES).await;
    let (id, key) = (s(&created, "id"), s(&created, "key"));

    let refused = [
        app.post_auth("/v1/api-keys", &key, json!({"name": "more", "scopes": ["chat:read"]}))
            .await,
        app.get_auth("/v1/api-keys", &key).await,
        app.get_auth(&format!("/v1/api-keys/{id}"), &key).await,
        delete_auth(&app, &format!("/v1/api-keys/{id}"), &key).await,
        app.post_auth(&format!("/v1/api-keys/{id}/rotate"), &key, json!({}))
            .await,
        app.get_auth("/v1/sessions", &key).await,
        app.post_auth("/v1/auth/logout", &key, json!({})).await,
        app.post_auth(
            "/v1/auth/password/change",
            &key,
            json!({"current_password": PASSWORD, "new_password": "a whole new passphrase"}),
        )
        .await,
        app.client
            .patch(app.url("/v1/me"))
            .bearer_auth(&key)
            .json(&json!({"name": "Mallory"}))
            .send()
            .await
            .unwrap(),
    ];
    for response in refused {
        problem(response, 403, "user_token_required").await;
    }
    // Nothing happened: one key, still working, name unchanged, session alive.
    let listed = list_keys(&app, &access).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["status"], "active");
    let me: Value = app.get_auth("/v1/me", &key).await.json().await.unwrap();
    assert_eq!(me["user"]["name"], "Ada Lovelace");
    assert_eq!(app.get_auth("/v1/sessions", &access).await.status(), 200);
    assert_eq!(app.login("ada@example.com", PASSWORD).await.status(), 200);
}

async fn a_suspended_owners_keys_are_refused(app: TestApp) {
    let access = user(&app, "ada@example.com").await;
    let key = s(&app.new_key(&access, "k", &["chat:read"]).await, "key");
    let bob = user(&app, "bob@example.com").await;
    let bobs_key = s(&app.new_key(&bob, "b", &["chat:read"]).await, "key");
    assert_eq!(authz(&app, &key, "?scope=chat:read").await.status(), 200);

    let output = app.cli(&["user", "lock", "ada@example.com"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let (app_ref, key_ref) = (&app, &key);
    let response = poll(
        Duration::from_secs(2),
        "the key refused after the lock",
        move || async move {
            let response = authz(app_ref, key_ref, "?scope=chat:read").await;
            (response.status() != 200).then_some(response)
        },
    )
    .await;
    problem(response, 403, "account_locked").await;
    problem(app.get_auth("/v1/me", &key).await, 403, "account_locked").await;
    // Another account is not affected.
    assert_eq!(authz(&app, &bobs_key, "").await.status(), 200);

    // Lifting the suspension lets the key work again (it was not revoked).
    let output = app.cli(&["user", "unlock", "ada@example.com"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    poll(
        Duration::from_secs(2),
        "the key accepted after the unlock",
        move || async move { (authz(app_ref, key_ref, "").await.status() == 200).then_some(()) },
    )
    .await;
}

async fn last_used_at_is_written_soon_after_a_use(app: TestApp) {
    let access = user(&app, "ada@example.com").await;
    let created = app.new_key(&access, "k", &["chat:read"]).await;
    let unused = s(&app.new_key(&access, "unused", &["chat:read"]).await, "id");
    let id = s(&created, "id");
    assert!(created["last_used_at"].is_null());
    assert!(get_key(&app, &access, &id).await["last_used_at"].is_null());

    let before = Utc::now();
    assert_eq!(authz(&app, &s(&created, "key"), "").await.status(), 200);
    let used = Instant::now();
    let (app_ref, access_ref, id_ref) = (&app, &access, &id);
    let last_used_at = poll(Duration::from_secs(8), "last_used_at", move || async move {
        let key = get_key(app_ref, access_ref, id_ref).await;
        (!key["last_used_at"].is_null()).then(|| time(&key["last_used_at"]))
    })
    .await;
    assert!(
        used.elapsed() <= Duration::from_secs(6),
        "written {:?} after the use",
        used.elapsed()
    );
    // Seconds precision: within a second of the use.
    assert!(
        last_used_at >= before - chrono::Duration::seconds(1),
        "{last_used_at} < {before}"
    );
    assert!(
        last_used_at <= Utc::now() + chrono::Duration::seconds(1),
        "{last_used_at}"
    );
    let listed = list_keys(&app, &access).await;
    let find = |id: &str| listed.iter().find(|k| k["id"] == id).unwrap().clone();
    assert_eq!(time(&find(&id)["last_used_at"]), last_used_at);
    assert!(
        find(&unused)["last_used_at"].is_null(),
        "a key never used has no last use"
    );
}

// ---------------------------------------------------------------- rate limits

const SMALL_BUDGET: &[(&str, &str)] = &[("AUTH_RATE_LIMIT_FREE", "5"), ("AUTH_RATE_LIMIT_PRO", "50")];

/// Asserts the `RateLimit-*` headers and returns `RateLimit-Remaining`.
fn rate_limit(response: &Response, limit: u64) -> u64 {
    assert_eq!(number_header(response, "ratelimit-limit"), limit, "{}", response.url());
    let reset = number_header(response, "ratelimit-reset");
    assert!((1..=60).contains(&reset), "RateLimit-Reset: {reset}");
    number_header(response, "ratelimit-remaining")
}

async fn the_plan_budget_is_shared_by_all_credentials_of_an_account(app: TestApp) {
    // Bob first: his sign-up must not eat into Ada's minute.
    let bob = user(&app, "bob@example.com").await;
    let pair = {
        app.verified_user("ada@example.com").await;
        app.tokens("ada@example.com").await
    };
    let access = s(&pair, "access_token");

    // Five requests a minute, whatever answers them and with whatever credential.
    let response = create_key(&app, &access, json!({"name": "one", "scopes": ["chat:read"]})).await;
    assert_eq!(response.status(), 201);
    assert_eq!(rate_limit(&response, 5), 4);
    let one = s(&response.json::<Value>().await.unwrap(), "key");
    let response = create_key(&app, &access, json!({"name": "two", "scopes": ["chat:read"]})).await;
    assert_eq!(response.status(), 201);
    assert_eq!(rate_limit(&response, 5), 3);
    let two = s(&response.json::<Value>().await.unwrap(), "key");
    let response = authz(&app, &one, "?scope=chat:read").await;
    assert_eq!(response.status(), 200);
    assert_eq!(rate_limit(&response, 5), 2);
    let response = authz(&app, &two, "?scope=chat:write").await;
    assert_eq!(rate_limit(&response, 5), 1);
    problem(response, 403, "insufficient_scope").await;
    let response = app.get_auth("/v1/sessions", &one).await;
    assert_eq!(rate_limit(&response, 5), 0);
    problem(response, 403, "user_token_required").await;

    // The sixth: refused, whichever credential of Ada's asks.
    for credential in [&one, &two, &access] {
        let response = authz(&app, credential, "?scope=chat:read").await;
        assert_eq!(rate_limit(&response, 5), 0);
        let retry_after = number_header(&response, "retry-after");
        assert!((1..=60).contains(&retry_after), "Retry-After: {retry_after}");
        problem(response, 429, "rate_limited").await;
    }
    problem(app.get_auth("/v1/me", &access).await, 429, "rate_limited").await;
    problem(app.get_auth("/v1/api-keys", &access).await, 429, "rate_limited").await;

    // Bob has his own budget.
    let response = app.get_auth("/v1/me", &bob).await;
    assert_eq!(response.status(), 200);
    assert_eq!(rate_limit(&response, 5), 4);
    // And a request without a credential is not counted against anyone.
    let response = app.client.get(app.url("/v1/authz")).send().await.unwrap();
    problem(response, 401, "missing_credentials").await;
}

async fn a_plan_change_lifts_the_limit_within_seconds(app: TestApp) {
    let access = user(&app, "ada@example.com").await;
    let key = s(&app.new_key(&access, "k", &["chat:read"]).await, "key");
    for _ in 0..4 {
        assert_eq!(authz(&app, &key, "").await.status(), 200);
    }
    let response = authz(&app, &key, "").await;
    assert_eq!(response.status(), 429);
    assert_eq!(rate_limit(&response, 5), 0);

    let output = app.cli(&["user", "set-plan", "ada@example.com", "pro"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let (app_ref, key_ref) = (&app, &key);
    let response = poll(Duration::from_secs(5), "the new plan's budget", move || async move {
        let response = authz(app_ref, key_ref, "?scope=chat:read").await;
        (response.status() == 200).then_some(response)
    })
    .await;
    assert_eq!(header(&response, "x-auth-plan"), "pro");
    assert!(rate_limit(&response, 50) >= 40);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["plan"], "pro");
    // The access token of the same account is on the new plan too.
    let response = app.get_auth("/v1/me", &access).await;
    assert_eq!(response.status(), 200);
    rate_limit(&response, 50);
    assert_eq!(response.json::<Value>().await.unwrap()["user"]["plan"], "pro");
}

on_both_backends! {
    a_new_key_is_shown_once_with_its_prefix(&[]),
    key_input_is_validated(&[]),
    keys_are_listed_newest_first_without_the_key(&[]),
    another_users_key_is_not_found(&[]),
    a_key_acts_for_its_owner_with_its_scopes(&[]),
    authz_checks_the_scopes_of_the_credential(&[]),
    bad_keys_are_refused_with_their_reason(&[]),
    a_revoked_key_is_refused_at_once(&[]),
    credentials_remembered_by_every_worker_end_at_once(&[]),
    every_instance_honours_a_revocation_even_just_after_its_start(&[]),
    rotation_replaces_a_key_with_a_new_one(&[]),
    an_expired_key_is_refused(&[]),
    a_key_cannot_act_as_a_logged_in_user(&[]),
    a_suspended_owners_keys_are_refused(&[]),
    last_used_at_is_written_soon_after_a_use(&[]),
    the_plan_budget_is_shared_by_all_credentials_of_an_account(super::SMALL_BUDGET),
    a_plan_change_lifts_the_limit_within_seconds(super::SMALL_BUDGET),
}
