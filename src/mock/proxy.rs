//! Forwarding to the upstream: method, path, query, headers and body go through unchanged (but for
//! hop-by-hop headers and `Host`), both bodies stream without being collected.

use std::net::SocketAddr;
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
    /// Longest wait for the upstream's answer head (after connecting).
    response_timeout: Duration,
    /// The URL as given, for messages.
    pub url: String,
}

/// Default longest time to connect to the upstream, and to wait for its answer.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// Why forwarding failed, with the status to answer.
#[derive(Debug)]
pub struct ForwardError {
    /// 502 when the upstream cannot be reached, 504 when it does not answer in time.
    pub status: http::StatusCode,
    pub message: String,
}

impl Upstream {
    /// Parses `--upstream`; only `http://` URLs are supported. Connecting and waiting for the
    /// answer are each bounded by `timeout`.
    pub fn parse(url: &str, timeout: Duration) -> Result<Self, String> {
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
            response_timeout: timeout,
            url: url.to_string(),
        })
    }

    /// Forwards a request; the error carries the status (502 or 504) and the message.
    pub async fn forward(
        &self,
        mut parts: http::request::Parts,
        body: Body,
        peer: SocketAddr,
    ) -> Result<http::Response<Body>, ForwardError> {
        let bad_gateway = |message: String| ForwardError {
            status: http::StatusCode::BAD_GATEWAY,
            message,
        };
        let path_and_query = match parts.uri.query() {
            Some(q) => format!("{}{}?{q}", self.prefix, parts.uri.path()),
            None => format!("{}{}", self.prefix, parts.uri.path()),
        };
        parts.uri = http::Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|e| bad_gateway(format!("cannot build the upstream URL: {e}")))?;
        parts.version = http::Version::HTTP_11;
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
        let request = http::Request::from_parts(parts, body);
        let response = tokio::time::timeout(self.response_timeout, self.client.request(request))
            .await
            .map_err(|_| ForwardError {
                status: http::StatusCode::GATEWAY_TIMEOUT,
                message: format!(
                    "upstream {} did not answer within {} s (--upstream-timeout)",
                    self.url,
                    self.response_timeout.as_secs()
                ),
            })?
            .map_err(|e| {
                bad_gateway(format!(
                    "upstream {} did not answer: {}",
                    self.url,
                    error_chain(&e)
                ))
            })?;
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Ok(http::Response::from_parts(
            parts,
            body.map_err(|e| Box::new(e) as BoxError).boxed(),
        ))
    }
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
        let parse = |url: &str| Upstream::parse(url, DEFAULT_UPSTREAM_TIMEOUT);
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
