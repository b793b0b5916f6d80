//! Public service endpoints, problem+json for the router, rate limits by IP.

use super::harness::*;
use serde_json::{json, Value};

#[tokio::test]
async fn health_readiness_jwks_metrics_and_openapi_answer() {
    let app = TestApp::spawn().await;
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(app.client.get(app.url("/readyz")).send().await.unwrap().status(), 200);

    let jwks: Value = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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

    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("convosphere_auth_http_requests_total"), "{metrics}");
    assert!(
        metrics.contains("convosphere_auth_logins_total{outcome=\"ok\"} 1"),
        "{metrics}"
    );

    let spec: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
    problem(
        app.client.get(app.url("/v1/auth/login")).send().await.unwrap(),
        405,
        "method_not_allowed",
    )
    .await;
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
