//! Public service endpoints, problem+json for the router, rate limits by IP.

use super::harness::*;
use serde_json::{json, Value};

#[tokio::test]
async fn health_readiness_jwks_metrics_and_openapi_answer() {
    let app = TestApp::spawn().await;
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(app.client.get(app.url("/readyz")).send().await.unwrap().status(), 200);

    let jwks: Value = app.get_json("/.well-known/jwks.json").await;
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert!(key["kid"].is_string());
    assert!(key.get("d").is_none(), "the private key must not be published");

    app.verified_user("ada@example.com").await;
    let pair = app.tokens("ada@example.com").await;
    let access = pair["access_token"].as_str().unwrap();
    let header: Value = decode_segment(access, 0);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["kid"], key["kid"]);
    let claims: Value = decode_segment(access, 1);
    assert_eq!(claims["iss"], "http://auth.test");
    assert_eq!(claims["aud"], "convosphere");
    assert_eq!(claims["sub"], pair["user"]["id"]);
    assert_eq!(claims["sid"], pair["session_id"]);
    assert_eq!(claims["plan"], "free");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 900);
    assert!(claims["jti"].is_string());

    let metrics = app.get_text("/metrics").await;
    assert!(metrics.contains("convosphere_auth_http_requests_total"), "{metrics}");
    assert!(
        metrics.contains("convosphere_auth_logins_total{outcome=\"ok\"} 1"),
        "{metrics}"
    );

    let spec: Value = app.get_json("/openapi.json").await;
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/v1/auth/signup",
        "/v1/auth/login",
        "/v1/auth/refresh",
        "/v1/me",
        "/v1/sessions/{id}",
        "/v1/auth/oauth/{provider}/start",
        "/v1/auth/oauth/{provider}/callback",
        "/v1/auth/oauth/exchange",
    ] {
        assert!(
            spec["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
}

fn decode_segment(jwt: &str, index: usize) -> Value {
    use base64::Engine;
    let segment = jwt.split('.').nth(index).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_problem_json() {
    let app = TestApp::spawn().await;
    problem(app.client.get(app.url("/nope")).send().await.unwrap(), 404, "not_found").await;
    let response = app.client.get(app.url("/v1/auth/login")).send().await.unwrap();
    // RFC 9110: a 405 says which methods the resource has.
    assert_eq!(response.headers()["allow"], "POST");
    problem(response, 405, "method_not_allowed").await;
    let response = app
        .client
        .request(reqwest::Method::TRACE, app.url("/v1/api-keys/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["allow"], "GET, DELETE");
    problem(response, 405, "method_not_allowed").await;
}

/// Found by schemathesis: a malformed query string was answered in
/// text/plain; a malformed body to rotate was ignored (the key rotated); a
/// JSON array was read as an object (its items as the fields in order); an
/// empty `scope=` made `/v1/authz` check no scope; empty `before=` and
/// `limit=` were read as absent.
#[tokio::test]
async fn malformed_queries_and_bodies_are_invalid_request() {
    let app = TestApp::spawn().await;
    let access = app.signed_in("ada@example.com").await;
    for query in [
        "/v1/me/events?limit=1&limit=2",
        "/v1/me/events?before=",
        "/v1/me/events?limit=",
        "/v1/authz?scope=",
    ] {
        problem(app.get_auth(query, &access).await, 400, "invalid_request").await;
    }
    problem(
        app.post("/v1/auth/login", json!(["ada@example.com", PASSWORD])).await,
        400,
        "invalid_request",
    )
    .await;
    let response = app
        .client
        .patch(app.url("/v1/me"))
        .bearer_auth(&access)
        .json(&json!(["Eve"]))
        .send()
        .await
        .unwrap();
    problem(response, 400, "invalid_request").await;
    let response = app
        .client
        .patch(app.url("/v1/me"))
        .bearer_auth(&access)
        .json(&json!({"name": 5}))
        .send()
        .await
        .unwrap();
    problem(response, 400, "invalid_request").await;
    let me: Value = app.get_auth("/v1/me", &access).await.json().await.unwrap();
    assert_eq!(me["user"]["name"], "Ada Lovelace");

    let key = app.new_key(&access, "ci", &["chat:read"]).await;
    let rotate = app.url(&format!("/v1/api-keys/{}/rotate", key["id"].as_str().unwrap()));
    for (content_type, body) in [
        ("application/json", "\u{0}"),
        ("application/json", "{\"expires_at\": 5}"),
        ("text/plain", "x"),
    ] {
        let response = app
            .client
            .post(&rotate)
            .bearer_auth(&access)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        problem(response, 400, "invalid_request").await;
    }
    // No body at all is still a rotation without expiry.
    let response = app.client.post(&rotate).bearer_auth(&access).send().await.unwrap();
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn the_openapi_document_describes_every_error_as_problem_json() {
    let app = TestApp::spawn().await;
    let spec: Value = app.get_json("/openapi.json").await;
    let mut operations = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            operations += 1;
            let responses = operation["responses"].as_object().unwrap();
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    let content = response["content"].as_object().unwrap();
                    assert_eq!(
                        content.keys().collect::<Vec<_>>(),
                        ["application/problem+json"],
                        "{method} {path} {status}"
                    );
                    assert!(
                        !response["description"].as_str().unwrap().is_empty(),
                        "{method} {path} {status}"
                    );
                }
            }
            if operation.get("security").is_some() {
                for status in ["401", "403", "429"] {
                    assert!(responses.contains_key(status), "{method} {path} lacks {status}");
                }
            }
            if path.starts_with("/v1/") {
                assert!(responses.contains_key("503"), "{method} {path} lacks 503");
            }
            if operation.get("requestBody").is_some() {
                for status in ["400", "413", "422"] {
                    assert!(responses.contains_key(status), "{method} {path} lacks {status}");
                }
            }
        }
    }
    assert!(operations >= 28, "{operations}");
    let events = &spec["paths"]["/v1/me/events"]["get"]["parameters"];
    assert!(
        events.as_array().unwrap().iter().all(|p| p["in"] == "query"),
        "{events}"
    );
    let login = &spec["components"]["schemas"]["LoginBody"];
    assert_eq!(login["required"], json!(["email", "password"]));
}

#[tokio::test]
async fn responses_carry_a_request_id() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");
    let response = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.headers()["x-request-id"].len(), 36);
}

#[tokio::test]
async fn unauthenticated_endpoints_are_limited_per_client_ip() {
    let app = TestApp::with(&[("AUTH_IP_RATE_LIMIT", "3")]).await;
    for remaining in (0..3).rev() {
        let response = app
            .post("/v1/auth/password/forgot", json!({"email": "a@example.com"}))
            .await;
        assert_eq!(response.status(), 202);
        assert_eq!(response.headers()["ratelimit-limit"], "3");
        assert_eq!(
            response.headers()["ratelimit-remaining"],
            remaining.to_string().as_str()
        );
    }
    let response = app.login("a@example.com", PASSWORD).await;
    let retry: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    problem(response, 429, "rate_limited").await;
    // Endpoints for logged-in users are not under the IP limit.
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), 200);
}
