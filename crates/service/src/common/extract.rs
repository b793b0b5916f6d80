//! Extractors: who is calling, from where, with what body.

use crate::common::problem::ApiError;
use crate::state::AppState;
use actix_web::dev::Payload;
use actix_web::error::JsonPayloadError;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::{ready, Ready};
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr};

/// The JSON body limits and error mapping for every endpoint.
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(super::MAX_BODY_BYTES)
        .error_handler(|err, _req| json_error(&err).into())
}

/// Query-string errors as problem+json (actix answers text/plain otherwise).
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default()
        .error_handler(|err, _req| ApiError::invalid_request(format!("a query parameter is malformed: {err}")).into())
}

/// A JSON request body that must be an object. serde's derived structs
/// also take an array of the fields in order (`["ada@example.com", "pw"]`
/// logs in, `[]` is an empty profile change); the API's bodies are objects
/// only, so anything else is `invalid_request`. Limits and errors are those
/// of [`json_config`].
pub struct Json<T>(pub T);

impl<T> Json<T> {
    /// The body.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: serde::de::DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let value = web::Json::<serde_json::Value>::from_request(req, payload);
        Box::pin(async move {
            let value = value.await.map_err(|error| match error.as_error::<ApiError>() {
                Some(problem) => problem.clone(),
                None => ApiError::invalid_request("the body could not be read"),
            })?;
            let value = value.into_inner();
            if !value.is_object() {
                return Err(ApiError::invalid_request("the body must be a JSON object"));
            }
            serde_json::from_value(value)
                .map(Json)
                .map_err(|e| ApiError::invalid_request(format!("a field has the wrong type: {e}")))
        })
    }
}

/// An optional JSON body: absent (no bytes) is `T::default()`; present, it
/// must be a JSON object of the right shape, as any other body
/// (`invalid_request`, `payload_too_large`), never silently ignored.
pub fn optional_json<T: Default>(req: &HttpRequest, body: Result<Json<T>, ApiError>) -> Result<T, ApiError> {
    match body {
        Ok(json) => Ok(json.into_inner()),
        Err(error) => {
            let length = req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
            if length.unwrap_or(0) == 0 && !chunked {
                Ok(T::default())
            } else {
                Err(error)
            }
        }
    }
}

fn json_error(err: &JsonPayloadError) -> ApiError {
    match err {
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => ApiError::new(
            actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than {} bytes", super::MAX_BODY_BYTES),
        ),
        JsonPayloadError::ContentType => {
            ApiError::invalid_request("the body must be JSON (Content-Type: application/json)")
        }
        JsonPayloadError::Deserialize(e) if e.is_data() => {
            ApiError::invalid_request(format!("a field has the wrong type: {e}"))
        }
        JsonPayloadError::Deserialize(e) => ApiError::invalid_request(format!("the body is not valid JSON: {e}")),
        _ => ApiError::invalid_request("the body could not be read"),
    }
}

/// The shared state, from a request. Borrowed, not cloned: a clone of the
/// `Arc` inside is an atomic write to a counter every worker thread shares,
/// and every request asks for the state more than once.
pub fn state(req: &HttpRequest) -> Result<&AppState, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .map(|data| data.get_ref())
        .ok_or_else(|| ApiError::internal(&convosphere_domain::InfraError::new("application state missing")))
}

/// The client's IP and user agent.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The peer address, or the first untrusted `X-Forwarded-For` hop
    /// when the peer is a trusted proxy.
    pub ip: IpAddr,
    /// `User-Agent`, at most 256 characters.
    pub user_agent: Option<String>,
}

impl ClientInfo {
    /// As the use cases take it (for sessions and the audit trail).
    pub fn context(&self) -> convosphere_domain::ClientContext {
        convosphere_domain::ClientContext {
            ip: Some(self.ip.to_string()),
            user_agent: self.user_agent.clone(),
        }
    }

    /// Reads the client's identity from a request.
    pub fn of(req: &HttpRequest, trusted_proxies: &[IpNet]) -> Self {
        let peer = req.peer_addr().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        Self {
            ip: known_client(req, trusted_proxies).unwrap_or(peer),
            user_agent: req
                .headers()
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|ua| ua.chars().take(256).collect()),
        }
    }
}

/// The client's IP when it is known: the peer, or the client a trusted
/// proxy forwarded for. A trusted proxy that named no client (a gateway
/// asking for itself) is no client.
pub fn known_client(req: &HttpRequest, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    if !trusted.iter().any(|net| net.contains(&peer)) {
        return Some(peer);
    }
    let forwarded_for = req.headers().get_all("x-forwarded-for").map(|line| line.to_str().ok());
    let client = client_ip(peer, forwarded_for, trusted);
    (client != peer).then_some(client)
}

/// The client IP: the peer, unless it is a trusted proxy; then the
/// right-most `X-Forwarded-For` hop that is not a trusted proxy.
///
/// Every line of the header counts, in order, as one list (RFC 9110 §5.3):
/// a proxy that adds a line instead of appending to the client's must not
/// let the client's own line decide. The walk from the right stops at a hop
/// that is not an address (or a line that is not text), so what stands left
/// of it, written by whoever sent it, is never believed. A hop may carry a
/// port (`192.0.2.1:4711`, `[2001:db8::1]:4711`), as some proxies write it.
pub fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl DoubleEndedIterator<Item = Option<&'a str>>,
    trusted: &[IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops = forwarded_for.rev().flat_map(|line| match line {
        Some(line) => line.rsplit(',').map(hop).collect::<Vec<_>>(),
        None => vec![None],
    });
    let mut client = peer;
    for ip in hops {
        let Some(ip) = ip else { break };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// One `X-Forwarded-For` hop: an address, perhaps with a port.
fn hop(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    let with_port = || text.parse::<std::net::SocketAddr>().map(|a| a.ip());
    text.parse().or_else(|_| with_port()).ok()
}

impl FromRequest for ClientInfo {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(state(req).map(|s| ClientInfo::of(req, &s.config.trusted_proxies)))
    }
}

/// The bearer credential of a request, or `missing_credentials`: printable
/// ASCII without spaces (RFC 6750's `b64token` and the API key format are
/// narrower still; what they refuse is refused by the credential's check).
pub fn bearer(req: &HttpRequest) -> Result<&str, ApiError> {
    let missing = || ApiError::unauthorized("missing_credentials", "send Authorization: Bearer <credential>");
    let value = req.headers().get(header::AUTHORIZATION).ok_or_else(missing)?.as_bytes();
    let space = value.iter().position(|&b| b == b' ').ok_or_else(missing)?;
    let (scheme, rest) = value.split_at(space);
    let credential = rest.trim_ascii();
    // One pass without an early exit, so that it runs on whole vectors: an
    // access token is about 500 bytes, and this runs on every request.
    let printable = credential.iter().fold(true, |ok, &b| ok & b.is_ascii_graphic());
    if !scheme.eq_ignore_ascii_case(b"bearer") || credential.is_empty() || !printable {
        return Err(missing());
    }
    std::str::from_utf8(credential).map_err(|_| missing())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_credential_is_printable_ascii_after_the_scheme() {
        let read = |value: &str| {
            let req = actix_web::test::TestRequest::default()
                .insert_header((header::AUTHORIZATION, value))
                .to_http_request();
            bearer(&req).map(str::to_owned).map_err(|e| e.code().to_owned())
        };
        assert_eq!(read("Bearer cs_abc.def-ghi_~+/="), Ok("cs_abc.def-ghi_~+/=".to_owned()));
        assert_eq!(read("bearer   token  "), Ok("token".to_owned()));
        assert_eq!(read("BEARER token"), Ok("token".to_owned()));
        for refused in [
            "Basic dXNlcjpwYXNz",
            "Bearer",
            "Bearer ",
            "Bearer two words",
            "Bearer t\tab",
            "Bearertoken",
        ] {
            assert_eq!(read(refused), Err("missing_credentials".to_owned()), "{refused:?}");
        }
        let req = actix_web::test::TestRequest::default()
            .insert_header((
                header::AUTHORIZATION,
                header::HeaderValue::from_bytes(b"Bearer t\xc3\xa9").unwrap(),
            ))
            .to_http_request();
        assert_eq!(bearer(&req).unwrap_err().code(), "missing_credentials");
        let none = actix_web::test::TestRequest::default().to_http_request();
        assert_eq!(bearer(&none).unwrap_err().code(), "missing_credentials");
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: IpAddr = "198.51.100.9".parse().unwrap();
        let ip = |peer: IpAddr, lines: &[&str]| client_ip(peer, lines.iter().map(|l| Some(*l)), &trusted).to_string();
        assert_eq!(ip(proxy, &["203.0.113.5, 10.9.9.9"]), "203.0.113.5");
        assert_eq!(ip(stranger, &["203.0.113.5, 10.9.9.9"]), stranger.to_string());
        assert_eq!(ip(proxy, &["1.2.3.4, 5.6.7.8"]), "5.6.7.8");
        assert_eq!(ip(proxy, &["garbage"]), proxy.to_string());
        assert_eq!(ip(proxy, &[]), proxy.to_string());
        // A proxy that adds a line: the client's own first line is not believed.
        assert_eq!(ip(proxy, &["1.2.3.4", "203.0.113.5"]), "203.0.113.5");
        assert_eq!(
            ip(proxy, &["1.2.3.4", "203.0.113.5, 10.0.0.7", "10.0.0.8"]),
            "203.0.113.5"
        );
        // Garbage stops the walk: nothing left of it is believed.
        assert_eq!(ip(proxy, &["1.2.3.4, nonsense, 10.0.0.9"]), "10.0.0.9");
        let unreadable = [Some("1.2.3.4"), None, Some("10.0.0.9")];
        assert_eq!(
            client_ip(proxy, unreadable.into_iter(), &trusted).to_string(),
            "10.0.0.9"
        );
        // Ports, as some proxies write them.
        assert_eq!(ip(proxy, &["198.51.100.1:4711"]), "198.51.100.1");
        assert_eq!(ip(proxy, &["[2001:db8::1]:4711"]), "2001:db8::1");
        assert_eq!(client_ip(proxy, [Some("1.2.3.4")].into_iter(), &[]), proxy);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn forwarded_for() -> impl Strategy<Value = String> {
            let hop = prop_oneof![
                any::<Ipv4Addr>().prop_map(|ip| ip.to_string()),
                any::<std::net::Ipv6Addr>().prop_map(|ip| ip.to_string()),
                "10\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
                "\\PC{0,12}",
            ];
            prop_oneof![
                any::<String>(),
                proptest::collection::vec(hop, 0..6).prop_map(|hops| hops.join(", ")),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// `X-Forwarded-For` is attacker-written: it never panics, is
            /// ignored from an untrusted peer, and can only name an address
            /// it holds.
            #[test]
            fn forwarded_for_never_panics_and_only_names_listed_addresses(
                peer_octets in prop_oneof![Just([10u8, 0, 0, 1]), any::<[u8; 4]>()],
                lines in proptest::collection::vec(forwarded_for(), 0..4),
            ) {
                let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
                let peer = IpAddr::from(peer_octets);
                let read = || lines.iter().map(|l| Some(l.as_str()));
                let client = client_ip(peer, read(), &trusted);
                if !trusted[0].contains(&peer) {
                    prop_assert_eq!(client, peer);
                } else if client != peer {
                    prop_assert!(lines.iter().flat_map(|l| l.split(',')).any(|h| hop(h) == Some(client)));
                }
                prop_assert_eq!(client_ip(peer, read(), &[]), peer);
            }

            /// The answer is the same whether a proxy appended its hops to the
            /// last line or added lines of its own: only the order of hops counts.
            #[test]
            fn lines_count_as_one_list(
                hops in proptest::collection::vec(forwarded_for(), 1..6),
                cut in 0usize..6,
            ) {
                let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
                let peer = IpAddr::from([10, 0, 0, 1]);
                // Hops of one line each, none blank (a blank line would be a hop of its own).
                let hops: Vec<String> = hops
                    .iter()
                    .map(|h| h.replace(',', " "))
                    .map(|h| if h.trim().is_empty() { "-".to_owned() } else { h })
                    .collect();
                let joined = hops.join(", ");
                let (left, right) = hops.split_at(cut.min(hops.len()));
                let lines = [left.join(", "), right.join(", ")];
                let lines = lines.iter().filter(|l| !l.is_empty()).map(|l| Some(l.as_str()));
                prop_assert_eq!(client_ip(peer, lines, &trusted), client_ip(peer, [Some(joined.as_str())].into_iter(), &trusted));
            }
        }
    }
}
