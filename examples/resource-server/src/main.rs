//! A service of the platform that guards its own endpoint with Convosphere
//! Auth, through the domain's types alone:
//!
//! - an access token (a JWT) is verified here, with the public keys fetched
//!   once from the auth service's `/.well-known/jwks.json`; a user access
//!   token holds every scope;
//! - an API key's form and checksum are checked here, so that a mistyped or
//!   forged key is refused without a round trip; a well-formed key is then
//!   asked about at the auth service's `GET /v1/authz`, which alone knows
//!   whether it is revoked, which scopes it holds and what is left of the
//!   plan's budget.
//!
//! ```text
//! AUTH_URL=http://127.0.0.1:8080 cargo run -p convosphere-example-resource-server
//! curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8081/agents
//! ```
//!
//! A signature check cannot see a logout: a token whose session ended is
//! accepted here until it expires (15 minutes). Send tokens to `/v1/authz`
//! too where that matters.

use actix_web::{http::header, web, App, HttpRequest, HttpResponse, HttpServer};
use convosphere_crypto::JwtVerifier;
use convosphere_domain::api_key::PresentedApiKey;
use convosphere_domain::{Credential, Scope, TokenVerifyError};

/// What the guard needs: the verifier of access tokens and where the auth
/// service answers for API keys.
struct Guard {
    verifier: JwtVerifier,
    auth_url: String,
    http: reqwest::Client,
}

/// Why a request is refused, as the status this service answers with.
#[derive(Debug, PartialEq, Eq)]
enum Refused {
    /// No credential, or one that is malformed, expired or revoked.
    Unauthenticated(&'static str),
    /// A valid key without the scope.
    Forbidden,
    /// The account's plan budget is spent.
    RateLimited,
    /// The auth service could not be asked.
    Unavailable,
}

impl Guard {
    /// The user id of the caller, if its credential holds `scope`.
    async fn require(&self, request: &HttpRequest, scope: Scope) -> Result<String, Refused> {
        let bearer = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or(Refused::Unauthenticated("no bearer credential"))?;
        match Credential::parse(bearer) {
            Credential::AccessToken(token) => match self.verifier.verify(token, chrono::Utc::now()) {
                // A user access token holds every scope.
                Ok(claims) => Ok(claims.user_id.to_string()),
                Err(TokenVerifyError::Expired) => Err(Refused::Unauthenticated("the token has expired")),
                Err(TokenVerifyError::Invalid) => Err(Refused::Unauthenticated("the token is invalid")),
            },
            Credential::ApiKey(key) => {
                PresentedApiKey::parse(key).map_err(|_| Refused::Unauthenticated("the API key is malformed"))?;
                self.ask_authz(key, scope).await
            }
        }
    }

    /// `GET /v1/authz?scope=…` with the key; its `X-Auth-User-Id` on 200.
    async fn ask_authz(&self, key: &str, scope: Scope) -> Result<String, Refused> {
        let url = format!("{}/v1/authz", self.auth_url);
        let answer = self
            .http
            .get(url)
            .query(&[("scope", scope.as_str())])
            .bearer_auth(key)
            .send();
        let answer = answer.await.map_err(|_| Refused::Unavailable)?;
        match answer.status().as_u16() {
            200 => {
                let user = answer.headers().get("x-auth-user-id").and_then(|v| v.to_str().ok());
                user.map(String::from).ok_or(Refused::Unavailable)
            }
            401 => Err(Refused::Unauthenticated("the API key is not valid")),
            403 => Err(Refused::Forbidden),
            429 => Err(Refused::RateLimited),
            _ => Err(Refused::Unavailable),
        }
    }
}

/// `GET /agents`: needs `agents:read`.
async fn agents(guard: web::Data<Guard>, request: HttpRequest) -> HttpResponse {
    match guard.require(&request, Scope::AgentsRead).await {
        Ok(user_id) => HttpResponse::Ok().body(format!("the agents of {user_id}\n")),
        Err(Refused::Unauthenticated(why)) => HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
            .body(format!("{why}\n")),
        Err(Refused::Forbidden) => HttpResponse::Forbidden().body("this needs agents:read\n"),
        Err(Refused::RateLimited) => HttpResponse::TooManyRequests().body("the plan's budget is spent\n"),
        Err(Refused::Unavailable) => HttpResponse::BadGateway().body("the auth service did not answer\n"),
    }
}

fn routes(config: &mut web::ServiceConfig) {
    config.route("/agents", web::get().to(agents));
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let auth_url = std::env::var("AUTH_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:8081".into());
    let http = reqwest::Client::new();
    let jwks = async {
        http.get(format!("{auth_url}/.well-known/jwks.json"))
            .send()
            .await?
            .text()
            .await
    };
    let jwks = jwks.await.map_err(std::io::Error::other)?;
    // The issuer of our tokens is the auth service's public URL.
    let verifier = JwtVerifier::from_jwks_str(&jwks, auth_url.clone()).map_err(std::io::Error::other)?;
    let guard = web::Data::new(Guard {
        verifier,
        auth_url,
        http,
    });
    println!("listening on {bind}");
    HttpServer::new(move || App::new().app_data(guard.clone()).configure(routes))
        .bind(bind)?
        .run()
        .await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use actix_web::test;
    use convosphere_crypto::{JwtSigner, SigningKey};
    use convosphere_domain::ports::{AccessClaims, TokenSigner};
    use convosphere_domain::{Plan, SessionId, UserId};

    const ISSUER: &str = "https://auth.example.com";

    /// A signer standing in for the auth service, and a guard that trusts
    /// its JWKS and asks `/v1/authz` at `auth_url`.
    fn guard(auth_url: &str) -> (JwtSigner, web::Data<Guard>) {
        let signer = JwtSigner::new(&SigningKey::generate().unwrap(), ISSUER).unwrap();
        let verifier = JwtVerifier::from_jwks_str(&signer.jwks().to_string(), ISSUER).unwrap();
        let guard = Guard {
            verifier,
            auth_url: auth_url.into(),
            http: reqwest::Client::new(),
        };
        (signer, web::Data::new(guard))
    }

    fn token(signer: &JwtSigner, lifetime: chrono::Duration) -> (UserId, String) {
        let now = chrono::Utc::now();
        let user_id = UserId::from_uuid(uuid::Uuid::from_u128(rand_u128()));
        let claims = AccessClaims {
            user_id,
            session_id: SessionId::from_uuid(uuid::Uuid::from_u128(rand_u128())),
            plan: Plan::Free,
            issued_at: now - chrono::Duration::minutes(20),
            expires_at: now - chrono::Duration::minutes(20) + lifetime,
            token_id: uuid::Uuid::from_u128(rand_u128()),
            auth_time: now - chrono::Duration::minutes(20),
            amr: vec![convosphere_domain::AuthMethod::Password],
        };
        (user_id, signer.sign(&claims).unwrap())
    }

    async fn get(guard: web::Data<Guard>, bearer: Option<&str>) -> (u16, String) {
        let app = test::init_service(App::new().app_data(guard).configure(routes)).await;
        let mut request = test::TestRequest::get().uri("/agents");
        if let Some(bearer) = bearer {
            request = request.insert_header((header::AUTHORIZATION, format!("Bearer {bearer}")));
        }
        let response = test::call_service(&app, request.to_request()).await;
        let status = response.status().as_u16();
        (
            status,
            String::from_utf8(test::read_body(response).await.to_vec()).unwrap(),
        )
    }

    /// A random id, from the operating system's generator.
    fn rand_u128() -> u128 {
        let mut bytes = [0; 16];
        convosphere_domain::ports::Rng::fill_bytes(&convosphere_crypto::OsRng, &mut bytes);
        u128::from_le_bytes(bytes)
    }

    /// An auth service that is not there: a test that reaches it gets 502.
    const NOWHERE: &str = "http://127.0.0.1:9";

    #[actix_web::test]
    async fn a_valid_access_token_is_let_in_as_its_user() {
        let (signer, guard) = guard(NOWHERE);
        let (user_id, token) = token(&signer, chrono::Duration::minutes(30));
        assert_eq!(
            get(guard, Some(&token)).await,
            (200, format!("the agents of {user_id}\n"))
        );
    }

    #[actix_web::test]
    async fn expired_foreign_and_missing_tokens_are_refused() {
        let (signer, guard) = guard(NOWHERE);
        let (_, expired) = token(&signer, chrono::Duration::minutes(15));
        assert_eq!(
            get(guard.clone(), Some(&expired)).await,
            (401, "the token has expired\n".into())
        );
        let (other, _) = self::guard(NOWHERE);
        let (_, foreign) = token(&other, chrono::Duration::minutes(30));
        assert_eq!(
            get(guard.clone(), Some(&foreign)).await,
            (401, "the token is invalid\n".into())
        );
        assert_eq!(get(guard, None).await, (401, "no bearer credential\n".into()));
    }

    #[actix_web::test]
    async fn a_malformed_key_is_refused_without_asking_the_auth_service() {
        let (_, guard) = guard(NOWHERE);
        // One character of the secret changed: the checksum no longer fits.
        let key = "cs_AbCdEfGh_0123456789abcdefghijklmnopqrstuV000000";
        assert_eq!(get(guard, Some(key)).await, (401, "the API key is malformed\n".into()));
    }

    /// A stand-in for `/v1/authz` that answers `status` for any key, and the
    /// user id header on 200.
    async fn authz_answering(status: u16) -> String {
        let server = HttpServer::new(move || {
            App::new().route(
                "/v1/authz",
                web::get().to(move || async move {
                    let mut answer = HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap());
                    answer
                        .insert_header(("x-auth-user-id", "0190a1b2-0000-7000-8000-000000000001"))
                        .finish()
                }),
            )
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
        let url = format!("http://{}", server.addrs()[0]);
        actix_web::rt::spawn(server.run());
        url
    }

    #[actix_web::test]
    async fn a_well_formed_key_is_decided_by_v1_authz() {
        let key = generated_key();
        let (_, guard) = guard(&authz_answering(200).await);
        let expected = (200, "the agents of 0190a1b2-0000-7000-8000-000000000001\n".to_owned());
        assert_eq!(get(guard, Some(&key)).await, expected);
        for (status, ours) in [(401, 401), (403, 403), (429, 429), (500, 502)] {
            let (_, guard) = self::guard(&authz_answering(status).await);
            assert_eq!(get(guard, Some(&key)).await.0, ours, "/v1/authz answered {status}");
        }
        let (_, guard) = self::guard(NOWHERE);
        assert_eq!(get(guard, Some(&key)).await.0, 502);
    }

    /// A key in the form the auth service issues.
    fn generated_key() -> String {
        use convosphere_domain::{api_key::GeneratedApiKey, ExposeSecret};
        let key = GeneratedApiKey::generate(&convosphere_crypto::OsRng).key;
        key.expose_secret().to_owned()
    }
}
