//! What `inframock bench` sends: one request (method, URL, headers, body), serialized once, and
//! the kept-alive HTTP/1.1 connections that carry it. The client is the worker's own loop — write
//! the request, read and parse the answer in place — with no task or channel between the socket and
//! the clock, so what it measures is the server plus one loopback round trip, as wrk's does.

use std::mem::MaybeUninit;
use std::net::{SocketAddr, ToSocketAddrs};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest answer head read (status line and headers).
const MAX_HEAD: usize = 64 << 10;
/// Headers of an answer that are parsed.
const MAX_HEADERS: usize = 64;

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
    /// The whole request as it goes on the wire.
    wire: Bytes,
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
        // The body's length is the request's own: a user's framing header would desynchronise.
        header_map.remove(http::header::CONTENT_LENGTH);
        header_map.remove(http::header::TRANSFER_ENCODING);
        let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
        Ok(Target {
            url: url.to_string(),
            wire: wire(&method, path_and_query, &header_map, &body),
            method,
            address,
            origin: format!("http://{authority}"),
        })
    }
}

/// The request's bytes: request line, headers, `content-length` when there is a body, the body.
fn wire(method: &Method, path_and_query: &str, headers: &HeaderMap, body: &[u8]) -> Bytes {
    let mut wire = Vec::with_capacity(256 + body.len());
    wire.extend_from_slice(format!("{method} {path_and_query} HTTP/1.1\r\n").as_bytes());
    for (name, value) in headers {
        wire.extend_from_slice(name.as_str().as_bytes());
        wire.extend_from_slice(b": ");
        wire.extend_from_slice(value.as_bytes());
        wire.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() || matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        wire.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    wire.extend_from_slice(b"\r\n");
    wire.extend_from_slice(body);
    Bytes::from(wire)
}

/// Why one exchange failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExchangeError {
    /// The server could not be reached.
    Connect,
    /// The connection broke before the whole answer arrived.
    Broken,
    /// The answer was not HTTP/1.1 this client can read (or its head was over 64 KiB).
    Malformed,
}

impl ExchangeError {
    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            ExchangeError::Connect => "connect",
            ExchangeError::Broken => "connection broken",
            ExchangeError::Malformed => "malformed answer",
        }
    }
}

/// One kept-alive HTTP/1.1 connection to the target; reconnects after a failure or a
/// `connection: close`.
pub struct Connection {
    stream: Option<TcpStream>,
    buffer: BytesMut,
}

/// How the body of an answer ends.
enum Framing {
    Length(usize),
    Chunked,
    /// Until the server closes the connection.
    Close,
}

impl Connection {
    /// Not connected yet: the first `exchange` connects.
    pub fn new() -> Connection {
        Connection {
            stream: None,
            buffer: BytesMut::with_capacity(16 << 10),
        }
    }

    /// Sends the target's request and reads the whole answer; its status.
    pub async fn exchange(&mut self, target: &Target) -> Result<http::StatusCode, ExchangeError> {
        let result = self.exchange_once(target).await;
        if result.is_err() {
            self.drop_connection();
        }
        result
    }

    async fn exchange_once(&mut self, target: &Target) -> Result<http::StatusCode, ExchangeError> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(target.address)
                .await
                .map_err(|_| ExchangeError::Connect)?;
            let _ = stream.set_nodelay(true);
            self.stream = Some(stream);
            self.buffer.clear();
        }
        let stream = self.stream.as_mut().ok_or(ExchangeError::Connect)?;
        stream
            .write_all(&target.wire)
            .await
            .map_err(|_| ExchangeError::Broken)?;
        loop {
            let (status, framing, keep_alive, head) = loop {
                if let Some(parsed) = parse_head(&self.buffer)? {
                    break parsed;
                }
                if self.buffer.len() > MAX_HEAD {
                    return Err(ExchangeError::Malformed);
                }
                read_more(stream, &mut self.buffer).await?;
            };
            self.buffer.advance(head);
            let no_body = target.method == Method::HEAD
                || status.is_informational()
                || status == http::StatusCode::NO_CONTENT
                || status == http::StatusCode::NOT_MODIFIED;
            if !no_body {
                match framing {
                    Framing::Length(length) => {
                        skip(stream, &mut self.buffer, length).await?;
                    }
                    Framing::Chunked => skip_chunks(stream, &mut self.buffer).await?,
                    Framing::Close => {
                        while read_more(stream, &mut self.buffer).await.is_ok() {
                            self.buffer.clear();
                        }
                        self.drop_connection();
                        return Ok(status);
                    }
                }
            }
            if status.is_informational() {
                continue;
            }
            if !keep_alive {
                self.drop_connection();
            }
            return Ok(status);
        }
    }

    /// Forgets the connection (after a timeout its answer may still arrive; it must not be read
    /// as the next request's).
    pub fn drop_connection(&mut self) {
        self.stream = None;
        self.buffer.clear();
    }
}

/// Reads what the socket has into `buffer`; the end of the stream is an error here.
async fn read_more(stream: &mut TcpStream, buffer: &mut BytesMut) -> Result<(), ExchangeError> {
    buffer.reserve(16 << 10);
    match stream.read_buf(buffer).await {
        Ok(0) | Err(_) => Err(ExchangeError::Broken),
        Ok(_) => Ok(()),
    }
}

/// Parses the answer head at the start of `buffer`: status, framing, keep-alive and its length;
/// `None` when it is not complete yet.
fn parse_head(
    buffer: &[u8],
) -> Result<Option<(http::StatusCode, Framing, bool, usize)>, ExchangeError> {
    if buffer.is_empty() {
        return Ok(None);
    }
    // Left uninitialised: httparse writes the headers it finds. Initialising all 64 on every
    // answer was a tenth of the tool's instructions per request (callgrind, hello-world server).
    let mut headers = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buffer,
        &mut headers,
    );
    let length = match parsed {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(ExchangeError::Malformed),
    };
    let status = response
        .code
        .and_then(|code| http::StatusCode::from_u16(code).ok())
        .ok_or(ExchangeError::Malformed)?;
    let mut framing = Framing::Close;
    let mut keep_alive = response.version == Some(1);
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let length = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or(ExchangeError::Malformed)?;
            if !matches!(framing, Framing::Chunked) {
                framing = Framing::Length(length);
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            if header.value.to_ascii_lowercase().ends_with(b"chunked") {
                framing = Framing::Chunked;
            }
        } else if header.name.eq_ignore_ascii_case("connection") {
            let value = header.value.to_ascii_lowercase();
            if value.windows(5).any(|w| w == b"close") {
                keep_alive = false;
            } else if value.windows(10).any(|w| w == b"keep-alive") {
                keep_alive = true;
            }
        }
    }
    Ok(Some((status, framing, keep_alive, length)))
}

/// Consumes `length` body bytes, reading as needed (the bytes are dropped as they come).
async fn skip(
    stream: &mut TcpStream,
    buffer: &mut BytesMut,
    mut length: usize,
) -> Result<(), ExchangeError> {
    loop {
        let take = length.min(buffer.len());
        buffer.advance(take);
        length -= take;
        if length == 0 {
            return Ok(());
        }
        read_more(stream, buffer).await?;
    }
}

/// Consumes a chunked body and its trailers.
async fn skip_chunks(stream: &mut TcpStream, buffer: &mut BytesMut) -> Result<(), ExchangeError> {
    loop {
        let line_end = loop {
            if let Some(at) = buffer.windows(2).position(|w| w == b"\r\n") {
                break at;
            }
            if buffer.len() > MAX_HEAD {
                return Err(ExchangeError::Malformed);
            }
            read_more(stream, buffer).await?;
        };
        let size_text = std::str::from_utf8(&buffer[..line_end])
            .map_err(|_| ExchangeError::Malformed)?
            .split(';')
            .next()
            .unwrap_or("")
            .trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| ExchangeError::Malformed)?;
        buffer.advance(line_end + 2);
        if size == 0 {
            // Trailers, if any, end with an empty line.
            loop {
                if let Some(at) = buffer.windows(2).position(|w| w == b"\r\n") {
                    buffer.advance(at + 2);
                    if at == 0 {
                        return Ok(());
                    }
                    continue;
                }
                if buffer.len() > MAX_HEAD {
                    return Err(ExchangeError::Malformed);
                }
                read_more(stream, buffer).await?;
            }
        }
        skip(stream, buffer, size + 2).await?;
    }
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
        let wire = String::from_utf8(target.wire.to_vec()).unwrap();
        assert!(wire.starts_with("GET /api/work?x=1 HTTP/1.1\r\n"), "{wire}");
        assert!(wire.contains("x-a: 1\r\n") && wire.contains("host: 127.0.0.1:8080\r\n"));
        assert!(wire.ends_with("\r\n\r\n") && !wire.contains("content-length"));
        let post = Target::parse("http://127.0.0.1:1/", "post", &[], Bytes::from("{}")).unwrap();
        assert!(String::from_utf8(post.wire.to_vec())
            .unwrap()
            .ends_with("content-length: 2\r\n\r\n{}"));
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
    fn answer_heads_give_status_framing_and_keep_alive() {
        let head = |text: &str| parse_head(text.as_bytes()).unwrap();
        let (status, framing, keep_alive, length) =
            head("HTTP/1.1 200 OK\r\ncontent-length: 13\r\n\r\nHello").unwrap();
        assert_eq!((status.as_u16(), keep_alive, length), (200, true, 39));
        assert!(matches!(framing, Framing::Length(13)));
        let (_, framing, keep_alive, _) =
            head("HTTP/1.1 404 x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
                .unwrap();
        assert!(matches!(framing, Framing::Chunked) && !keep_alive);
        let (_, framing, keep_alive, _) = head("HTTP/1.0 200 OK\r\n\r\n").unwrap();
        assert!(matches!(framing, Framing::Close) && !keep_alive);
        assert!(head("HTTP/1.1 200 OK\r\ncontent-le").is_none(), "partial");
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
        assert!(head("").is_none(), "nothing read yet");
        // Up to MAX_HEADERS headers are read; one more is a malformed answer, never a panic.
        let with_headers = |count: usize| {
            let extra: String = (1..count).map(|n| format!("x-{n}: {n}\r\n")).collect();
            format!("HTTP/1.1 200 OK\r\n{extra}content-length: 2\r\n\r\nok")
        };
        let (_, framing, _, _) = head(&with_headers(MAX_HEADERS)).unwrap();
        assert!(matches!(framing, Framing::Length(2)));
        assert!(parse_head(with_headers(MAX_HEADERS + 1).as_bytes()).is_err());
    }

    #[tokio::test]
    async fn chunked_and_sized_answers_are_read_whole_on_a_kept_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let answers: [&[u8]; 3] = [
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
                b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n2\r\nde\r\n0\r\nx-t: 1\r\n\r\n",
                b"HTTP/1.1 503 Busy\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            ];
            let mut request = [0u8; 1024];
            for answer in answers {
                let _ = socket.read(&mut request).await.unwrap();
                // Split writes: the client must read across them.
                let (first, rest) = answer.split_at(answer.len() / 2);
                socket.write_all(first).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                socket.write_all(rest).await.unwrap();
            }
        });
        let target =
            Target::parse(&format!("http://{address}/"), "GET", &[], Bytes::new()).unwrap();
        let mut connection = Connection::new();
        for expected in [200, 201, 503] {
            assert_eq!(
                connection.exchange(&target).await.unwrap().as_u16(),
                expected
            );
        }
        assert!(connection.stream.is_none(), "connection: close is honoured");
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
