//! What `inframock bench` sends: one request (method, URL, headers, body) to a server on this
//! machine, and the HTTP/1.1 connections that carry it.

use std::net::{SocketAddr, ToSocketAddrs};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// The request every step sends, parsed once.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL as given, for reports.
    pub url: String,
    pub method: Method,
    /// Where to connect.
    pub address: SocketAddr,
    /// `scheme://host:port` of the URL (where `--scenario` is posted).
    pub origin: String,
    path_and_query: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Target {
    /// Parses the URL and `K:V` headers. Only `http://` URLs of this machine (127.0.0.1, ::1,
    /// localhost) are loaded: the tool is for the local stack and its mocks, never someone's server.
    pub fn parse(
        url: &str,
        method: &str,
        headers: &[String],
        body: Bytes,
    ) -> Result<Target, String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("URL {url:?} is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(format!(
                    "URL {url:?}: scheme {other} is not supported; use an http:// URL"
                ))
            }
            None => return Err(format!("URL {url:?} needs a scheme, e.g. http://{url}")),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("URL {url:?} has no host"))?;
        let port = authority.port_u16().unwrap_or(80);
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let address = (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("URL {url:?}: cannot resolve {host}: {e}"))?
            .find(|a| a.ip().is_loopback())
            .ok_or_else(|| {
                format!(
                    "URL {url:?}: {host} is not this machine; inframock bench loads only servers on 127.0.0.1, ::1 or localhost"
                )
            })?;
        let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("--method {method:?} is not an HTTP method"))?;
        let mut header_map = HeaderMap::new();
        for header in headers {
            let (name, value) = header
                .split_once(':')
                .ok_or_else(|| format!("--header {header:?} must be NAME:VALUE"))?;
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| format!("--header {header:?}: {name:?} is not a header name"))?;
            let value = HeaderValue::from_str(value.trim())
                .map_err(|_| format!("--header {header:?}: the value is not a header value"))?;
            header_map.append(name, value);
        }
        if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
            header_map.entry(http::header::HOST).or_insert(host);
        }
        let path_and_query = uri
            .path_and_query()
            .map_or("/".to_string(), |p| p.as_str().to_string());
        Ok(Target {
            url: url.to_string(),
            method,
            address,
            origin: format!("http://{authority}"),
            path_and_query,
            headers: header_map,
            body,
        })
    }

    fn request(&self) -> http::Request<Full<Bytes>> {
        let mut request = http::Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        if let Ok(uri) = self.path_and_query.parse() {
            *request.uri_mut() = uri;
        }
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// Why one exchange failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExchangeError {
    /// The server could not be reached.
    Connect,
    /// The connection broke before the whole answer arrived.
    Broken,
}

impl ExchangeError {
    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            ExchangeError::Connect => "connect",
            ExchangeError::Broken => "connection broken",
        }
    }
}

/// One kept-alive HTTP/1.1 connection to the target; reconnects after a failure.
pub struct Connection {
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    /// Not connected yet: the first `exchange` connects.
    pub fn new() -> Connection {
        Connection { sender: None }
    }

    /// Sends the target's request and reads the whole answer; its status.
    pub async fn exchange(&mut self, target: &Target) -> Result<http::StatusCode, ExchangeError> {
        let sender = match &mut self.sender {
            Some(sender) if !sender.is_closed() => sender,
            _ => self.sender.insert(connect(target.address).await?),
        };
        if sender.ready().await.is_err() {
            self.sender = None;
            return Err(ExchangeError::Broken);
        }
        let result = async {
            let response = sender
                .send_request(target.request())
                .await
                .map_err(|_| ExchangeError::Broken)?;
            let status = response.status();
            let mut body = response.into_body();
            while let Some(frame) = body.frame().await {
                frame.map_err(|_| ExchangeError::Broken)?;
            }
            Ok(status)
        }
        .await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    /// Forgets the connection (after a timeout its answer may still arrive; it must not be read
    /// as the next request's).
    pub fn drop_connection(&mut self) {
        self.sender = None;
    }
}

async fn connect(address: SocketAddr) -> Result<SendRequest<Full<Bytes>>, ExchangeError> {
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|_| ExchangeError::Connect)?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| ExchangeError::Connect)?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<Target, String> {
        Target::parse(url, "get", &["x-a: 1".into()], Bytes::new())
    }

    #[test]
    fn loopback_http_urls_only() {
        let target = parse("http://127.0.0.1:8080/api/work?x=1").unwrap();
        assert_eq!(target.address.port(), 8080);
        assert_eq!(target.origin, "http://127.0.0.1:8080");
        assert_eq!(target.method, Method::GET);
        let request = target.request();
        assert_eq!(request.uri(), "/api/work?x=1");
        assert_eq!(request.headers()["x-a"], "1");
        assert_eq!(request.headers()["host"], "127.0.0.1:8080");
        assert!(parse("http://localhost:9/").is_ok());
        assert!(parse("https://127.0.0.1/")
            .unwrap_err()
            .contains("not supported"));
        assert!(parse("http://192.0.2.1/")
            .unwrap_err()
            .contains("not this machine"));
        assert!(parse("127.0.0.1:80").is_err());
    }

    #[test]
    fn bad_headers_and_methods_are_named() {
        let header = Target::parse(
            "http://127.0.0.1/",
            "GET",
            &["nocolon".into()],
            Bytes::new(),
        );
        assert!(header.unwrap_err().contains("NAME:VALUE"));
        let method = Target::parse("http://127.0.0.1/", "GE T", &[], Bytes::new());
        assert!(method.unwrap_err().contains("--method"));
    }
}
