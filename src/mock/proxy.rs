//! Forwarding to the upstream: method, path, query, headers and body go through unchanged (but for
//! hop-by-hop headers and `Host`), both bodies stream without being collected. Each upstream has a
//! policy (the scenario seed's "smart" proxy): how long its answer may take, how many requests may
//! be in flight to it (more are refused at once, never queued), and optionally a hedge: a second
//! identical request when the first is slow, the first good answer winning.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Error type of the bodies the mock passes around.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A request or response body: fixed bytes or a stream.
pub type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// Headers that describe one connection and are not forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// The server requests are forwarded to.
#[derive(Clone)]
pub struct Upstream {
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// Path prefix of the upstream URL, without a trailing `/`.
    prefix: String,
    client: Client<HttpConnector, Body>,
    policy: ProxyPolicy,
    /// Requests forwarded and not yet answered in full.
    in_flight: Arc<AtomicUsize>,
    /// The URL as given, for messages.
    pub url: String,
}

/// Default longest time to connect to the upstream, and to wait for its answer.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request body a hedged upstream takes (a hedge sends the body twice, so it is held):
/// the mock's bound on any body it reads into memory.
const HEDGE_BODY_LIMIT: usize = super::server::BODY_LIMIT;

/// How requests to one upstream are bounded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProxyPolicy {
    /// Longest time to connect, and again to wait for the answer's head (then 504).
    pub timeout: Duration,
    /// Most requests in flight; beyond it a 503 at once.
    pub limit: Option<usize>,
    /// Send a second identical request when the first has not answered after this long.
    pub hedge_after: Option<Duration>,
}

impl Default for ProxyPolicy {
    fn default() -> Self {
        ProxyPolicy {
            timeout: DEFAULT_UPSTREAM_TIMEOUT,
            limit: None,
            hedge_after: None,
        }
    }
}

/// What went wrong forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The upstream could not be reached or broke the exchange (502).
    Connect,
    /// The upstream did not answer in time (504).
    Timeout,
    /// `limit` requests were already in flight (503); not the upstream's fault.
    Refused,
    /// The request could not be forwarded as asked (e.g. a hedged body over the limit).
    Request,
}

impl FailureKind {
    /// The name in the backend-error log and the journal.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Connect => "connect",
            FailureKind::Timeout => "timeout",
            FailureKind::Refused => "refused",
            FailureKind::Request => "request",
        }
    }

    /// Whether the upstream is to blame (logged as a backend error).
    pub fn is_backend_error(self) -> bool {
        matches!(self, FailureKind::Connect | FailureKind::Timeout)
    }
}

/// Why forwarding failed, with the status to answer.
#[derive(Debug)]
pub struct ForwardError {
    /// 502 when the upstream cannot be reached, 504 when it does not answer in time, 503 when
    /// too many requests are in flight.
    pub status: http::StatusCode,
    pub kind: FailureKind,
    pub message: String,
}

/// The head of a request to forward, kept to send it a second time when hedging.
struct RequestHead {
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
}

impl RequestHead {
    fn request(&self, body: Body) -> http::Request<Body> {
        let mut request = http::Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.version_mut() = http::Version::HTTP_11;
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// A place among the requests in flight to one upstream, given back when dropped.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Upstream {
    /// Parses an upstream URL (only `http://`) with its policy; the error names `--upstream`.
    pub fn with_policy(url: &str, policy: ProxyPolicy) -> Result<Self, String> {
        let timeout = policy.timeout;
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("--upstream {url:?} is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(format!(
                    "--upstream {url:?}: scheme {other} is not supported; use an http:// URL"
                ))
            }
            None => {
                return Err(format!(
                    "--upstream {url:?} needs a scheme, e.g. http://{url}"
                ))
            }
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("--upstream {url:?} has no host"))?;
        if uri.query().is_some() {
            return Err(format!("--upstream {url:?} must not have a query"));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(256)
            .build(connector);
        Ok(Upstream {
            scheme: http::uri::Scheme::HTTP,
            authority,
            prefix: uri.path().trim_end_matches('/').to_string(),
            client,
            policy,
            in_flight: Arc::new(AtomicUsize::new(0)),
            url: url.to_string(),
        })
    }

    /// Forwards a request; the error carries the status (502, 503 or 504) and the message.
    pub async fn forward(
        &self,
        parts: http::request::Parts,
        body: Body,
        peer: SocketAddr,
    ) -> Result<http::Response<Body>, ForwardError> {
        let place = self.take_place()?;
        let head = self.head(parts, peer)?;
        let response = match self.policy.hedge_after {
            None => self.send(head.request(body)).await?,
            Some(after) => self.hedged(&head, body, after).await?,
        };
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        // The place is held until the answer's body has been passed on (or dropped).
        let body = body.map_frame(move |frame| {
            let _held = &place;
            frame
        });
        Ok(http::Response::from_parts(parts, body.boxed()))
    }

    fn take_place(&self) -> Result<InFlight, ForwardError> {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let place = InFlight(Arc::clone(&self.in_flight));
        match self.policy.limit {
            Some(limit) if before >= limit => Err(ForwardError {
                status: http::StatusCode::SERVICE_UNAVAILABLE,
                kind: FailureKind::Refused,
                message: "too many requests in flight".to_string(),
            }),
            _ => Ok(place),
        }
    }

    /// The request's head as the upstream gets it.
    fn head(
        &self,
        mut parts: http::request::Parts,
        peer: SocketAddr,
    ) -> Result<RequestHead, ForwardError> {
        let path_and_query = match parts.uri.query() {
            Some(q) => format!("{}{}?{q}", self.prefix, parts.uri.path()),
            None => format!("{}{}", self.prefix, parts.uri.path()),
        };
        parts.uri = http::Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|e| ForwardError {
                status: http::StatusCode::BAD_GATEWAY,
                kind: FailureKind::Request,
                message: format!("cannot build the upstream URL: {e}"),
            })?;
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove(http::header::HOST);
        let forwarded_for = match parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(earlier) => format!("{earlier}, {}", peer.ip()),
            None => peer.ip().to_string(),
        };
        if let Ok(value) = http::HeaderValue::from_str(&forwarded_for) {
            parts.headers.insert("x-forwarded-for", value);
        }
        Ok(RequestHead {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
        })
    }

    /// One exchange, bounded by the policy's timeout.
    async fn send(
        &self,
        request: http::Request<Body>,
    ) -> Result<http::Response<Body>, ForwardError> {
        let timeout = self.policy.timeout;
        let response = tokio::time::timeout(timeout, self.client.request(request))
            .await
            .map_err(|_| ForwardError {
                status: http::StatusCode::GATEWAY_TIMEOUT,
                kind: FailureKind::Timeout,
                message: format!(
                    "upstream {} did not answer within {} (its timeout)",
                    self.url,
                    crate::output::human_duration(timeout)
                ),
            })?
            .map_err(|e| ForwardError {
                status: http::StatusCode::BAD_GATEWAY,
                kind: FailureKind::Connect,
                message: format!("upstream {} did not answer: {}", self.url, error_chain(&e)),
            })?;
        Ok(response.map(|body| body.map_err(|e| Box::new(e) as BoxError).boxed()))
    }

    /// Sends the request; when no answer came after `after`, sends it again, and takes the first
    /// good answer (below 500). When both fail, the second failure is the answer.
    async fn hedged(
        &self,
        head: &RequestHead,
        body: Body,
        after: Duration,
    ) -> Result<http::Response<Body>, ForwardError> {
        let body = hold(body).await.map_err(|why| ForwardError {
            status: http::StatusCode::PAYLOAD_TOO_LARGE,
            kind: FailureKind::Request,
            message: format!("the request body could not be held for a hedged upstream: {why}"),
        })?;
        let first = self.send(head.request(fixed(&body)));
        tokio::pin!(first);
        tokio::select! {
            result = &mut first => return result,
            () = tokio::time::sleep(after) => {}
        }
        let second = async {
            let mut response = self.send(head.request(fixed(&body))).await?;
            response.headers_mut().insert(
                "x-inframock-hedged",
                http::HeaderValue::from_static("second"),
            );
            Ok::<_, ForwardError>(response)
        };
        tokio::pin!(second);
        tokio::select! {
            result = &mut first => if good(&result) { result } else { second.await },
            result = &mut second => if good(&result) { result } else { first.await },
        }
    }
}

/// Reads a request body into memory, at most `HEDGE_BODY_LIMIT` bytes.
async fn hold(mut body: Body) -> Result<Bytes, String> {
    let mut held = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Ok(data) = frame.into_data() {
            if held.len() + data.len() > HEDGE_BODY_LIMIT {
                return Err(format!(
                    "it is over {} MiB, the most a hedged request holds",
                    HEDGE_BODY_LIMIT >> 20
                ));
            }
            held.extend_from_slice(&data);
        }
    }
    Ok(held.freeze())
}

/// A body of fixed bytes (a hedged request's, sent twice).
fn fixed(bytes: &Bytes) -> Body {
    http_body_util::Full::new(bytes.clone())
        .map_err(|never| match never {})
        .boxed()
}

/// An answer a hedge may take: one below 500.
fn good(result: &Result<http::Response<Body>, ForwardError>) -> bool {
    matches!(result, Ok(response) if !response.status().is_server_error())
}

fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    // Headers named in `Connection` are hop-by-hop too.
    let named: Vec<String> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    for name in HOP_BY_HOP
        .iter()
        .copied()
        .chain(named.iter().map(String::as_str))
    {
        headers.remove(name);
    }
}

/// An error and its causes on one line ("client error (Connect): connection refused").
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_upstreams_with_a_host() {
        let parse = |url: &str| Upstream::with_policy(url, ProxyPolicy::default());
        assert!(parse("http://127.0.0.1:9000/base/").is_ok());
        let error = |url: &str| parse(url).err().unwrap_or_default();
        assert!(error("https://example.com").contains("not supported"));
        assert!(!error("localhost:9000").is_empty());
        assert!(error("http://h/?q=1").contains("query"));
    }

    #[test]
    fn hop_by_hop_headers_are_dropped() {
        let mut headers = http::HeaderMap::new();
        headers.insert("connection", "keep-alive, x-private".parse().unwrap());
        headers.insert("x-private", "1".parse().unwrap());
        headers.insert("keep-alive", "5".parse().unwrap());
        headers.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-kept"));
    }
}
