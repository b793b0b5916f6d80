//! Access tokens: EdDSA-signed JWTs in the RFC 9068 profile.

use crate::keys::{KeyError, SigningKey};
use chrono::{DateTime, TimeDelta, Utc};
use convosphere_domain::ports::{AccessClaims, TokenSigner, TokenVerifyError};
use convosphere_domain::{AuthMethod, InfraError, Plan, SessionId, UserId};
use josekit::jwk::Jwk;
use josekit::jws::alg::eddsa::{EddsaJwsSigner, EddsaJwsVerifier};
use josekit::jws::{EdDSA, JwsHeader, JwsVerifier};
use josekit::jwt::{self, JwtPayload};
use serde_json::{Map, Value};
use std::fmt;
use std::time::Duration;
use uuid::Uuid;

/// The `aud` of every access token.
pub const AUDIENCE: &str = "convosphere";
/// The `client_id` of every access token (RFC 9068 asks for one): the
/// service issues tokens to itself on behalf of its users.
pub const CLIENT_ID: &str = "convosphere-auth";
/// The `typ` header of every access token (RFC 9068).
pub const TOKEN_TYPE: &str = "at+jwt";
/// The `alg` of every access token.
pub const ALGORITHM: &str = "EdDSA";

/// Tokens longer than this are refused before any parsing (ours are ~450 bytes).
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Signs access tokens with the Ed25519 key and verifies them, as the
/// [`TokenSigner`] port asks. Its `Debug` shows the issuer and the `kid`.
#[derive(Clone)]
pub struct JwtSigner {
    signer: EddsaJwsSigner,
    key_id: String,
    issuer: String,
    verifier: JwtVerifier,
    jwks: Value,
}

impl JwtSigner {
    /// A signer whose tokens say `iss` = `issuer` (the service's public URL).
    pub fn new(key: &SigningKey, issuer: impl Into<String>) -> Result<Self, KeyError> {
        let issuer = issuer.into();
        let mut signer = EdDSA
            .signer_from_der(&*key.to_der())
            .map_err(|_| KeyError::Invalid("the signing key is not a usable Ed25519 key".to_owned()))?;
        signer.set_key_id(key.key_id());
        let jwks = serde_json::json!({ "keys": [key.public_jwk()] });
        let verifier = JwtVerifier::from_jwks(&jwks, issuer.clone())?;
        Ok(Self {
            signer,
            key_id: key.key_id().to_owned(),
            issuer,
            verifier,
            jwks,
        })
    }

    /// The `iss` of the tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The `kid` of the tokens.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The JWKS document that `/.well-known/jwks.json` serves: the public
    /// key that verifies the tokens.
    pub fn jwks(&self) -> Value {
        self.jwks.clone()
    }

    /// A verifier of this signer's tokens, without the private key.
    pub fn verifier(&self) -> &JwtVerifier {
        &self.verifier
    }
}

impl fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSigner")
            .field("issuer", &self.issuer)
            .field("kid", &self.key_id())
            .finish_non_exhaustive()
    }
}

impl TokenSigner for JwtSigner {
    fn sign(&self, claims: &AccessClaims) -> Result<String, InfraError> {
        let mut payload = JwtPayload::new();
        payload.set_issuer(&self.issuer);
        payload.set_subject(claims.user_id.to_string());
        payload.set_audience(vec![AUDIENCE]);
        payload.set_jwt_id(claims.token_id.to_string());
        // NumericDate in whole seconds: a sub-second `expires_at` makes the
        // token end up to one second early, never late.
        for (name, value) in [
            ("exp", Value::from(claims.expires_at.timestamp())),
            ("iat", Value::from(claims.issued_at.timestamp())),
            ("sid", Value::from(claims.session_id.to_string())),
            ("plan", Value::from(claims.plan.as_str())),
            ("client_id", Value::from(CLIENT_ID)),
            ("auth_time", Value::from(claims.auth_time.timestamp())),
            ("amr", claims.amr.iter().map(|m| m.as_str()).collect()),
        ] {
            payload.set_claim(name, Some(value)).map_err(InfraError::new)?;
        }
        let mut header = JwsHeader::new();
        header.set_token_type(TOKEN_TYPE);
        jwt::encode_with_signer(&payload, &header, &self.signer).map_err(InfraError::new)
    }

    fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<AccessClaims, TokenVerifyError> {
        self.verifier.verify(token, now)
    }
}

/// Verifies Convosphere access tokens with the public keys of a JWKS,
/// without the private key: what another service uses.
///
/// It checks the signature, `alg` (EdDSA), `typ` (`at+jwt`), `kid`, `iss`,
/// `aud` (`convosphere`) and `exp`, with no leeway unless
/// [`with_leeway`](Self::with_leeway) grants some. It does not know whether
/// the session has ended since the token was issued: ask Auth's
/// `/v1/authz` when that matters.
#[derive(Clone)]
pub struct JwtVerifier {
    keys: Vec<(String, EddsaJwsVerifier)>,
    issuer: String,
    leeway: TimeDelta,
}

impl JwtVerifier {
    /// A verifier for tokens of `issuer` (Auth's public URL) signed by a key
    /// of `jwks` (the document of `/.well-known/jwks.json`). Keys that are
    /// not Ed25519 signing keys with a `kid` are skipped; there must be at
    /// least one that is.
    pub fn from_jwks(jwks: &Value, issuer: impl Into<String>) -> Result<Self, KeyError> {
        let keys = jwks
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| KeyError::Invalid("the JWKS has no \"keys\" array".to_owned()))?;
        let keys: Vec<_> = keys.iter().filter_map(usable_key).collect();
        if keys.is_empty() {
            return Err(KeyError::Invalid(
                "the JWKS holds no Ed25519 signing key with a kid".to_owned(),
            ));
        }
        Ok(Self {
            keys,
            issuer: issuer.into(),
            leeway: TimeDelta::zero(),
        })
    }

    /// [`from_jwks`](Self::from_jwks) for the JWKS as JSON text.
    pub fn from_jwks_str(jwks: &str, issuer: impl Into<String>) -> Result<Self, KeyError> {
        let jwks: Value =
            serde_json::from_str(jwks).map_err(|e| KeyError::Invalid(format!("the JWKS is not JSON: {e}")))?;
        Self::from_jwks(&jwks, issuer)
    }

    /// Accepts tokens up to `leeway` past their `exp` (for services whose
    /// clocks drift from Auth's). Auth itself grants none.
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = TimeDelta::from_std(leeway).unwrap_or(TimeDelta::MAX);
        self
    }

    /// The `iss` that tokens must have.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Verifies a token at `now`: its claims, or
    /// [`Expired`](TokenVerifyError::Expired) when it is right in every way
    /// but `now` is at or past `exp`, or [`Invalid`](TokenVerifyError::Invalid)
    /// for anything else (so a forged token never reads as merely expired).
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<AccessClaims, TokenVerifyError> {
        use TokenVerifyError::{Expired, Invalid};
        if token.len() > MAX_TOKEN_LEN {
            return Err(Invalid);
        }
        // josekit checks `alg` against the chosen key and the signature
        // before the payload is even parsed.
        let (payload, header) = jwt::decode_with_verifier_selector(token, |header| {
            Ok(header
                .key_id()
                .and_then(|kid| self.keys.iter().find(|(id, _)| id == kid))
                .map(|(_, verifier)| verifier as &dyn JwsVerifier))
        })
        .map_err(|_| Invalid)?;
        if !header.token_type().is_some_and(is_access_token_type) {
            return Err(Invalid);
        }
        let claims = payload.claims_set();
        if payload.issuer() != Some(self.issuer.as_str()) {
            return Err(Invalid);
        }
        if !payload.audience().is_some_and(|aud| aud.contains(&AUDIENCE)) {
            return Err(Invalid);
        }
        let user_id = UserId::from_uuid(uuid_claim(claims, "sub")?);
        let session_id = SessionId::from_uuid(uuid_claim(claims, "sid")?);
        let token_id = uuid_claim(claims, "jti")?;
        let plan: Plan = string_claim(claims, "plan")?.parse().map_err(|_| Invalid)?;
        let issued_at = time_claim(claims, "iat")?;
        let expires_at = time_claim(claims, "exp")?;
        // Tokens issued before these claims existed count from their issue.
        let auth_time = match claims.contains_key("auth_time") {
            true => time_claim(claims, "auth_time")?,
            false => issued_at,
        };
        let names = claims.get("amr").and_then(Value::as_array).into_iter().flatten();
        let amr = names.filter_map(Value::as_str).filter_map(AuthMethod::parse).collect();
        let later = |t: DateTime<Utc>| t.checked_add_signed(self.leeway).unwrap_or(DateTime::<Utc>::MAX_UTC);
        if claims.contains_key("nbf") && later(now) < time_claim(claims, "nbf")? {
            return Err(Invalid);
        }
        // No leeway by default: the token is dead from the second of its `exp`.
        if now >= later(expires_at) {
            return Err(Expired);
        }
        Ok(AccessClaims {
            user_id,
            session_id,
            plan,
            issued_at,
            expires_at,
            token_id,
            auth_time,
            amr,
        })
    }
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|(kid, _)| kid.as_str()).collect();
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.issuer)
            .field("kids", &kids)
            .field("leeway", &self.leeway)
            .finish()
    }
}

/// A verifier for a JWK that is an Ed25519 signing key with a `kid`.
fn usable_key(jwk: &Value) -> Option<(String, EddsaJwsVerifier)> {
    let map = jwk.as_object()?;
    let text = |name: &str| map.get(name).and_then(Value::as_str);
    if text("kty") != Some("OKP") || text("crv") != Some("Ed25519") {
        return None;
    }
    if text("alg").is_some_and(|alg| alg != ALGORITHM) || text("use").is_some_and(|u| u != "sig") {
        return None;
    }
    let kid = text("kid")?.to_owned();
    let jwk = Jwk::from_map(map.clone()).ok()?;
    let mut verifier = EdDSA.verifier_from_jwk(&jwk).ok()?;
    verifier.set_key_id(kid.clone());
    Some((kid, verifier))
}

/// RFC 9068 names `at+jwt`; RFC 7515 lets the `application/` prefix be
/// left out, and media types compare case-insensitively.
fn is_access_token_type(typ: &str) -> bool {
    let typ = typ.to_ascii_lowercase();
    typ == TOKEN_TYPE || typ.strip_prefix("application/") == Some(TOKEN_TYPE)
}

fn string_claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Result<&'a str, TokenVerifyError> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .ok_or(TokenVerifyError::Invalid)
}

fn uuid_claim(claims: &Map<String, Value>, name: &str) -> Result<Uuid, TokenVerifyError> {
    Uuid::parse_str(string_claim(claims, name)?).map_err(|_| TokenVerifyError::Invalid)
}

/// A NumericDate in whole seconds, as this service writes them.
fn time_claim(claims: &Map<String, Value>, name: &str) -> Result<DateTime<Utc>, TokenVerifyError> {
    claims
        .get(name)
        .and_then(Value::as_i64)
        .and_then(|secs| DateTime::from_timestamp(secs, 0))
        .ok_or(TokenVerifyError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typ_compares_as_a_media_type() {
        for typ in ["at+jwt", "AT+JWT", "application/at+jwt", "Application/At+Jwt"] {
            assert!(is_access_token_type(typ), "{typ}");
        }
        for typ in ["JWT", "jwt", "at+jwt2", "text/at+jwt", ""] {
            assert!(!is_access_token_type(typ), "{typ}");
        }
    }

    #[test]
    fn jwks_without_a_usable_key_is_refused() {
        for jwks in [
            serde_json::json!({}),
            serde_json::json!({"keys": []}),
            serde_json::json!({"keys": [{"kty": "RSA", "kid": "a", "n": "x", "e": "AQAB"}]}),
            // No kid: tokens name their key, so a key without one is useless.
            serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}),
        ] {
            assert!(JwtVerifier::from_jwks(&jwks, "https://auth.example").is_err(), "{jwks}");
        }
        assert!(JwtVerifier::from_jwks_str("not json", "https://auth.example").is_err());
    }
}
