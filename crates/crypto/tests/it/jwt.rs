use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};
use convosphere_crypto::{load_or_generate_signing_key, JwtSigner, JwtVerifier, SigningKey};
use convosphere_domain::ports::{AccessClaims, TokenSigner, TokenVerifyError};
use convosphere_domain::{AuthMethod, Plan, SessionId, UserId};
use josekit::jws::{EdDSA, JwsHeader};
use josekit::jwt::{self, JwtPayload};
use serde_json::{json, Value};
use uuid::Uuid;

const ISSUER: &str = "https://auth.convosphere.example";

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap()
}

fn claims() -> AccessClaims {
    AccessClaims {
        user_id: UserId::from_uuid(Uuid::from_u128(0x0197_0000_0000_7000_8000_0000_0000_0001)),
        session_id: SessionId::from_uuid(Uuid::from_u128(0x0197_0000_0000_7000_8000_0000_0000_0002)),
        plan: Plan::Business,
        issued_at: at(1_750_000_000),
        expires_at: at(1_750_000_900),
        token_id: Uuid::from_u128(0x0197_0000_0000_7000_8000_0000_0000_0003),
        auth_time: at(1_749_999_000),
        amr: vec![AuthMethod::Password, AuthMethod::OneTimeCode],
    }
}

fn signer() -> JwtSigner {
    JwtSigner::new(&SigningKey::generate().unwrap(), ISSUER).unwrap()
}

/// The decoded header and payload of a compact JWS, unverified.
fn parts(token: &str) -> (Value, Value) {
    let mut segments = token.split('.');
    let mut decode = || serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segments.next().unwrap()).unwrap()).unwrap();
    (decode(), decode())
}

/// A signer key whose PEM the test can use to forge tokens with josekit.
fn key_with_pem() -> (SigningKey, Vec<u8>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.pem");
    let key = load_or_generate_signing_key(&path).unwrap();
    (key, std::fs::read(&path).unwrap(), dir)
}

/// Signs arbitrary header and payload claims with the PEM key.
fn forge(pem: &[u8], kid: &str, header_claims: Value, payload_claims: Value) -> String {
    let mut signer = EdDSA.signer_from_pem(pem).unwrap();
    signer.set_key_id(kid);
    let header = JwsHeader::from_map(header_claims.as_object().unwrap().clone()).unwrap();
    let payload = JwtPayload::from_map(payload_claims.as_object().unwrap().clone()).unwrap();
    jwt::encode_with_signer(&payload, &header, &signer).unwrap()
}

fn good_payload() -> Value {
    json!({
        "iss": ISSUER, "sub": "01970000-0000-7000-8000-000000000001", "aud": "convosphere",
        "exp": 1_750_000_900, "iat": 1_750_000_000, "jti": "01970000-0000-7000-8000-000000000003",
        "sid": "01970000-0000-7000-8000-000000000002", "plan": "business", "client_id": "convosphere-auth",
        "auth_time": 1_749_999_000, "amr": ["pwd", "otp"],
    })
}

#[test]
fn a_token_round_trips_with_every_claim() {
    let signer = signer();
    let token = signer.sign(&claims()).unwrap();
    assert_eq!(signer.verify(&token, at(1_750_000_000)), Ok(claims()));

    let (header, payload) = parts(&token);
    assert_eq!(header, json!({"alg": "EdDSA", "typ": "at+jwt", "kid": signer.key_id()}));
    assert_eq!(payload, good_payload());
}

#[test]
fn a_token_of_before_auth_time_and_amr_counts_from_its_issue() {
    let (key, pem, _dir) = key_with_pem();
    let signer = JwtSigner::new(&key, ISSUER).unwrap();
    let mut payload = good_payload();
    payload
        .as_object_mut()
        .unwrap()
        .retain(|name, _| name != "auth_time" && name != "amr");
    let token = forge(&pem, key.key_id(), json!({"typ": "at+jwt"}), payload);
    let claims = signer.verify(&token, at(1_750_000_000)).unwrap();
    assert_eq!(claims.auth_time, claims.issued_at);
    assert!(claims.amr.is_empty());
}

#[test]
fn a_token_expires_at_exactly_exp() {
    let signer = signer();
    let token = signer.sign(&claims()).unwrap();
    let exp = claims().expires_at;
    assert!(signer.verify(&token, exp - TimeDelta::milliseconds(1)).is_ok());
    assert_eq!(signer.verify(&token, exp), Err(TokenVerifyError::Expired));
    assert_eq!(
        signer.verify(&token, exp + TimeDelta::days(365)),
        Err(TokenVerifyError::Expired)
    );
}

#[test]
fn sub_second_expiry_rounds_down() {
    let signer = signer();
    let mut claims = claims();
    claims.expires_at += TimeDelta::milliseconds(999);
    let token = signer.sign(&claims).unwrap();
    assert_eq!(parts(&token).1["exp"], json!(1_750_000_900));
    assert_eq!(signer.verify(&token, at(1_750_000_900)), Err(TokenVerifyError::Expired));
}

#[test]
fn a_tampered_payload_is_invalid() {
    let signer = signer();
    let token = signer.sign(&claims()).unwrap();
    let segments: Vec<&str> = token.split('.').collect();
    let mut payload = parts(&token).1;
    payload["plan"] = json!("pro");
    let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap());
    let tampered = format!("{}.{forged_payload}.{}", segments[0], segments[2]);
    assert_eq!(
        signer.verify(&tampered, at(1_750_000_000)),
        Err(TokenVerifyError::Invalid)
    );

    // A flipped bit in the signature, and a missing signature.
    let mut signature = URL_SAFE_NO_PAD.decode(segments[2]).unwrap();
    signature[0] ^= 1;
    let flipped = format!("{}.{}.{}", segments[0], segments[1], URL_SAFE_NO_PAD.encode(signature));
    assert_eq!(
        signer.verify(&flipped, at(1_750_000_000)),
        Err(TokenVerifyError::Invalid)
    );
    let unsigned = format!("{}.{}.", segments[0], segments[1]);
    assert_eq!(
        signer.verify(&unsigned, at(1_750_000_000)),
        Err(TokenVerifyError::Invalid)
    );
}

#[test]
fn a_bad_signature_is_invalid_even_when_expired() {
    let signer = signer();
    let token = signer.sign(&claims()).unwrap();
    let broken = format!("{}AAAA", &token[..token.len() - 4]);
    assert_eq!(
        signer.verify(&broken, at(1_750_009_999)),
        Err(TokenVerifyError::Invalid)
    );
}

#[test]
fn a_token_of_another_key_is_invalid() {
    let signer = signer();
    let stranger = signer_with_issuer(ISSUER);
    let token = stranger.sign(&claims()).unwrap();
    assert_eq!(signer.verify(&token, at(1_750_000_000)), Err(TokenVerifyError::Invalid));

    // Another key that claims to be ours by its kid.
    let (_, pem, _dir) = key_with_pem();
    let forged = forge(&pem, signer.key_id(), json!({"typ": "at+jwt"}), good_payload());
    assert_eq!(
        signer.verify(&forged, at(1_750_000_000)),
        Err(TokenVerifyError::Invalid)
    );
}

fn signer_with_issuer(issuer: &str) -> JwtSigner {
    JwtSigner::new(&SigningKey::generate().unwrap(), issuer).unwrap()
}

#[test]
fn a_wrong_issuer_or_audience_is_invalid() {
    let (key, pem, _dir) = key_with_pem();
    let signer = JwtSigner::new(&key, ISSUER).unwrap();
    let now = at(1_750_000_000);
    let verify = |payload: Value| signer.verify(&forge(&pem, key.key_id(), json!({"typ": "at+jwt"}), payload), now);
    assert!(verify(good_payload()).is_ok());
    assert_eq!(
        verify(json!({"aud": ["other", "convosphere"]}).merged(good_payload())).map(|_| ()),
        Ok(())
    );

    for (claim, value) in [
        ("iss", json!("https://evil.example")),
        ("iss", json!(format!("{ISSUER}/"))),
        ("aud", json!("other")),
        ("aud", json!(["other"])),
        ("sub", json!("not-a-uuid")),
        ("plan", json!("enterprise")),
        ("exp", json!(1_750_000_900.5)),
        ("nbf", json!(1_750_000_001)),
    ] {
        let mut payload = good_payload();
        payload[claim] = value;
        assert_eq!(verify(payload), Err(TokenVerifyError::Invalid), "{claim}");
    }
    for missing in ["iss", "aud", "sub", "sid", "jti", "plan", "exp", "iat"] {
        let mut payload = good_payload();
        payload.as_object_mut().unwrap().remove(missing);
        assert_eq!(verify(payload), Err(TokenVerifyError::Invalid), "without {missing}");
    }
    // Expired and from another issuer: not ours, so invalid rather than expired.
    let mut payload = good_payload();
    payload["iss"] = json!("https://evil.example");
    let stale = forge(&pem, key.key_id(), json!({"typ": "at+jwt"}), payload);
    assert_eq!(signer.verify(&stale, at(1_750_009_999)), Err(TokenVerifyError::Invalid));

    // The same key signing for another issuer.
    let elsewhere = JwtSigner::new(&key, "https://other.example").unwrap();
    assert_eq!(
        signer.verify(&elsewhere.sign(&claims()).unwrap(), now),
        Err(TokenVerifyError::Invalid)
    );
}

#[test]
fn a_wrong_type_or_algorithm_is_invalid() {
    let (key, pem, _dir) = key_with_pem();
    let signer = JwtSigner::new(&key, ISSUER).unwrap();
    let now = at(1_750_000_000);
    for header in [json!({}), json!({"typ": "JWT"}), json!({"typ": "id_token+jwt"})] {
        let token = forge(&pem, key.key_id(), header.clone(), good_payload());
        assert_eq!(signer.verify(&token, now), Err(TokenVerifyError::Invalid), "{header}");
    }
    let token = forge(&pem, key.key_id(), json!({"typ": "application/at+jwt"}), good_payload());
    assert!(signer.verify(&token, now).is_ok());

    // alg "none", with and without our kid.
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "at+jwt", "kid": key.key_id()}).to_string());
    let payload = URL_SAFE_NO_PAD.encode(good_payload().to_string());
    assert_eq!(
        signer.verify(&format!("{header}.{payload}."), now),
        Err(TokenVerifyError::Invalid)
    );
    // A token without a kid.
    let mut no_kid = EdDSA.signer_from_pem(&pem).unwrap();
    no_kid.remove_key_id();
    let header = JwsHeader::from_map(json!({"typ": "at+jwt"}).as_object().unwrap().clone()).unwrap();
    let payload = JwtPayload::from_map(good_payload().as_object().unwrap().clone()).unwrap();
    let token = jwt::encode_with_signer(&payload, &header, &no_kid).unwrap();
    assert_eq!(signer.verify(&token, now), Err(TokenVerifyError::Invalid));
}

#[test]
fn garbage_is_invalid() {
    let signer = signer();
    let now = at(1_750_000_000);
    for token in ["", ".", "..", "a.b.c", "not a token", &"x".repeat(10_000)] {
        assert_eq!(signer.verify(token, now), Err(TokenVerifyError::Invalid), "{token:.20}");
    }
}

#[test]
fn the_jwks_publishes_the_public_key_only() {
    let signer = signer();
    let jwks = signer.jwks();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let key = keys[0].as_object().unwrap();
    let mut names: Vec<&str> = key.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["alg", "crv", "kid", "kty", "use", "x"]);
    assert_eq!(
        (&key["kty"], &key["crv"], &key["alg"], &key["use"]),
        (&json!("OKP"), &json!("Ed25519"), &json!("EdDSA"), &json!("sig"))
    );
    assert_eq!(key["kid"], json!(signer.key_id()));
    assert_eq!(URL_SAFE_NO_PAD.decode(key["x"].as_str().unwrap()).unwrap().len(), 32);
}

#[test]
fn another_service_verifies_tokens_with_the_jwks() {
    let signer = signer();
    let token = signer.sign(&claims()).unwrap();
    let published = signer.jwks().to_string();

    let verifier = JwtVerifier::from_jwks_str(&published, ISSUER).unwrap();
    assert_eq!(verifier.verify(&token, at(1_750_000_000)), Ok(claims()));
    assert_eq!(
        verifier.verify(&token, at(1_750_000_900)),
        Err(TokenVerifyError::Expired)
    );

    // With leeway for a drifting clock.
    let lenient = verifier.clone().with_leeway(std::time::Duration::from_secs(30));
    assert!(lenient.verify(&token, at(1_750_000_929)).is_ok());
    assert_eq!(
        lenient.verify(&token, at(1_750_000_930)),
        Err(TokenVerifyError::Expired)
    );

    // Another issuer's verifier refuses it; a JWKS with a rotated-in key
    // next to the current one still accepts it.
    let other = JwtVerifier::from_jwks_str(&published, "https://other.example").unwrap();
    assert_eq!(other.verify(&token, at(1_750_000_000)), Err(TokenVerifyError::Invalid));
    let next = signer_with_issuer(ISSUER).jwks()["keys"][0].clone();
    let rotated = json!({"keys": [next, signer.jwks()["keys"][0], {"kty": "RSA", "kid": "legacy"}]});
    let verifier = JwtVerifier::from_jwks(&rotated, ISSUER).unwrap();
    assert_eq!(verifier.verify(&token, at(1_750_000_000)), Ok(claims()));
}

#[test]
fn debug_shows_no_key_material() {
    let (key, pem, _dir) = key_with_pem();
    let signer = JwtSigner::new(&key, ISSUER).unwrap();
    let pem_body: String = String::from_utf8(pem).unwrap().lines().nth(1).unwrap().to_owned();
    for text in [
        format!("{key:?}"),
        format!("{signer:?}"),
        format!("{:?}", signer.verifier()),
    ] {
        assert!(text.contains(key.key_id()), "{text}");
        assert!(!text.contains(&pem_body[..20]), "{text}");
    }
}

trait Merged {
    fn merged(self, base: Value) -> Value;
}

impl Merged for Value {
    /// `base` with this object's members put over it.
    fn merged(self, mut base: Value) -> Value {
        for (name, value) in self.as_object().unwrap() {
            base[name] = value.clone();
        }
        base
    }
}

/// Property tests: access tokens arrive from anyone, in any shape.
mod properties {
    use super::*;
    use josekit::jws::JwsSigner;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    const NOW: i64 = 1_750_000_000;

    /// One key for every case: our signer, and the PEM to forge with it.
    fn ours() -> &'static (JwtSigner, Vec<u8>) {
        static OURS: OnceLock<(JwtSigner, Vec<u8>)> = OnceLock::new();
        OURS.get_or_init(|| {
            let (key, pem, _dir) = key_with_pem();
            (JwtSigner::new(&key, ISSUER).unwrap(), pem)
        })
    }

    /// A compact JWS over arbitrary header and payload JSON, signed by our
    /// key with its kid: the strongest forgery short of a valid token.
    fn sign_raw(header: &Value, payload: &Value) -> String {
        let (_, pem) = ours();
        let signer = EdDSA.signer_from_pem(pem).unwrap();
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        );
        let signature = signer.sign(input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            any::<String>().prop_map(Value::from),
            "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
                proptest::collection::btree_map("[a-z]{1,4}", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Text a client might send as a bearer token.
    fn arbitrary_token() -> impl Strategy<Value = String> {
        let segment = "[A-Za-z0-9_-]{0,120}";
        prop_oneof![
            any::<String>(),
            (segment, segment, segment).prop_map(|(a, b, c)| format!("{a}.{b}.{c}")),
            "[A-Za-z0-9_.=+/-]{0,600}",
            // Header and payload that decode, with a random signature.
            (
                json_value(),
                json_value(),
                proptest::collection::vec(any::<u8>(), 0..80),
                proptest::sample::select(vec!["EdDSA", "none", "HS256", "RS256", "ES256", ""]),
            )
                .prop_map(|(header_extra, payload_extra, signature, alg)| {
                    let header = json!({"alg": alg, "typ": "at+jwt", "kid": ours().0.key_id(), "x": header_extra});
                    let payload = json!({"x": payload_extra}).merged(good_payload());
                    format!(
                        "{}.{}.{}",
                        URL_SAFE_NO_PAD.encode(header.to_string()),
                        URL_SAFE_NO_PAD.encode(payload.to_string()),
                        URL_SAFE_NO_PAD.encode(signature)
                    )
                }),
        ]
    }

    /// Ways to change a valid token.
    #[derive(Debug, Clone)]
    enum Mutation {
        Replace(usize, char),
        Delete(usize),
        Insert(usize, char),
        Truncate(usize),
        SwapSegments(usize, usize),
        Append(String),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let base64url_char = proptest::sample::select(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.="
                .chars()
                .collect::<Vec<_>>(),
        );
        let some_char = prop_oneof![base64url_char, any::<char>()];
        prop_oneof![
            4 => (any::<usize>(), some_char.clone()).prop_map(|(i, c)| Mutation::Replace(i, c)),
            1 => any::<usize>().prop_map(Mutation::Delete),
            1 => (any::<usize>(), some_char).prop_map(|(i, c)| Mutation::Insert(i, c)),
            1 => any::<usize>().prop_map(Mutation::Truncate),
            1 => (0..3usize, 0..3usize).prop_map(|(a, b)| Mutation::SwapSegments(a, b)),
            1 => "[A-Za-z0-9_.-]{1,8}".prop_map(Mutation::Append),
        ]
    }

    fn apply(token: &str, mutation: &Mutation) -> String {
        let chars: Vec<char> = token.chars().collect();
        let mut out = chars.clone();
        match mutation {
            Mutation::Replace(i, c) => out[i % chars.len()] = *c,
            Mutation::Delete(i) => {
                out.remove(i % chars.len());
            }
            Mutation::Insert(i, c) => out.insert(i % (chars.len() + 1), *c),
            Mutation::Truncate(i) => out.truncate(i % chars.len()),
            Mutation::SwapSegments(a, b) => {
                let mut segments: Vec<&str> = token.split('.').collect();
                segments.swap(*a, *b);
                return segments.join(".");
            }
            Mutation::Append(tail) => return format!("{token}{tail}"),
        }
        out.into_iter().collect()
    }

    fn claims_from((user, session, token_id, plan, lifetime): (u128, u128, u128, usize, i64)) -> AccessClaims {
        AccessClaims {
            user_id: UserId::from_uuid(Uuid::from_u128(user)),
            session_id: SessionId::from_uuid(Uuid::from_u128(session)),
            plan: [Plan::Free, Plan::Starter, Plan::Business, Plan::Pro][plan % 4],
            issued_at: at(NOW),
            expires_at: at(NOW + lifetime),
            token_id: Uuid::from_u128(token_id),
            auth_time: at(NOW - lifetime),
            amr: vec![[AuthMethod::Password, AuthMethod::Federated, AuthMethod::HardwareKey][plan % 3]],
        }
    }

    fn any_claims() -> impl Strategy<Value = AccessClaims> {
        (
            any::<u128>(),
            any::<u128>(),
            any::<u128>(),
            any::<usize>(),
            1i64..100_000,
        )
            .prop_map(claims_from)
    }

    fn any_now() -> impl Strategy<Value = DateTime<Utc>> {
        prop_oneof![
            (DateTime::<Utc>::MIN_UTC.timestamp()..=DateTime::<Utc>::MAX_UTC.timestamp()),
            (NOW - 1_000..NOW + 200_000),
        ]
        .prop_map(at)
    }

    /// Exhaustive, not sampled: every position gets a few replacements, and
    /// the last two characters of each segment every base64url character,
    /// the separator and padding. Those hold the unused low bits that a lax
    /// base64 decoder ignores (a second spelling of the same signature).
    #[test]
    fn every_single_character_change_of_a_token_is_refused() {
        let (signer, _) = ours();
        let token = signer.sign(&claims()).unwrap();
        let every: Vec<char> = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ "
            .chars()
            .collect();
        let few = ['A', 'B', 'g', '_', '.', '='];
        let segment_ends: Vec<usize> = token.match_indices('.').map(|(i, _)| i).chain([token.len()]).collect();
        let mut tried = 0;
        for index in 0..token.len() {
            let near_an_end = segment_ends.iter().any(|end| index < *end && end - index <= 2);
            let replacements: &[char] = if near_an_end { &every } else { &few };
            for &replacement in replacements {
                let changed = apply(&token, &Mutation::Replace(index, replacement));
                if changed != token {
                    tried += 1;
                    assert_eq!(
                        signer.verify(&changed, at(NOW)),
                        Err(TokenVerifyError::Invalid),
                        "{replacement:?} at {index}"
                    );
                }
            }
        }
        assert!(tried > 2_000, "{tried}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_text_never_panics_and_never_verifies(token in arbitrary_token(), now in any_now()) {
            let (signer, _) = ours();
            prop_assert_eq!(signer.verify(&token, now), Err(TokenVerifyError::Invalid));
            prop_assert_eq!(signer.verifier().verify(&token, now), Err(TokenVerifyError::Invalid));
        }

        #[test]
        fn a_mutated_valid_token_never_verifies(claims in any_claims(), mutation in mutation()) {
            let (signer, _) = ours();
            let token = signer.sign(&claims).unwrap();
            prop_assert_eq!(signer.verify(&token, at(NOW)), Ok(claims));
            let mutated = apply(&token, &mutation);
            prop_assume!(mutated != token);
            // Invalid, never merely expired or accepted.
            prop_assert_eq!(signer.verify(&mutated, at(NOW)), Err(TokenVerifyError::Invalid), "{:?}", mutation);
        }

        #[test]
        fn signed_tokens_with_arbitrary_claims_never_panic_and_verify_only_when_well_formed(
            header_extra in proptest::collection::btree_map(
                proptest::sample::select(vec!["typ", "alg", "kid", "crit", "b64", "cty", "jku", "x5u"]),
                json_value(),
                0..3,
            ),
            payload_extra in proptest::collection::btree_map(
                proptest::sample::select(vec!["exp", "iat", "nbf", "sub", "sid", "jti", "plan", "iss", "aud"]),
                json_value(),
                0..4,
            ),
            now in any_now(),
        ) {
            let (signer, _) = ours();
            let header = Value::Object(header_extra.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
                .merged(json!({"alg": "EdDSA", "typ": "at+jwt", "kid": signer.key_id()}));
            let payload = Value::Object(payload_extra.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
                .merged(good_payload());
            let token = sign_raw(&header, &payload);
            if let Ok(verified) = signer.verify(&token, now) {
                // Accepted only with every claim as this service writes it.
                prop_assert!(now < verified.expires_at);
                prop_assert_eq!(payload["iss"].as_str(), Some(ISSUER));
                prop_assert_eq!(header["alg"].as_str(), Some("EdDSA"));
                prop_assert_eq!(header["kid"].as_str(), Some(signer.key_id()));
                prop_assert_eq!(payload["exp"].as_i64(), Some(verified.expires_at.timestamp()));
            }
        }
    }
}
