//! A small HTTP/1.1 client for the tests, on the hyper client the binary already builds: a test-only
//! client crate (reqwest) would change the feature set of hyper and the AWS SDK's shared crates and
//! compile them all a second time for `cargo test`.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use http_body_util::{BodyDataStream, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A keep-alive client (cheap to clone; clones share the connection pool).
#[derive(Clone)]
pub struct Client {
    inner: hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>,
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

/// Settings of a client.
pub struct ClientBuilder {
    idle_per_host: usize,
}

impl ClientBuilder {
    /// Idle connections kept per host.
    pub fn pool_max_idle_per_host(mut self, count: usize) -> Self {
        self.idle_per_host = count;
        self
    }

    /// The client.
    pub fn build(self) -> Result<Client, std::convert::Infallible> {
        Ok(Client {
            inner: hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(self.idle_per_host)
                .build_http(),
        })
    }
}

impl Client {
    /// A client with default settings.
    pub fn new() -> Client {
        Client::builder()
            .build()
            .unwrap_or_else(|never| match never {})
    }

    /// Settings, then `build`.
    pub fn builder() -> ClientBuilder {
        ClientBuilder {
            idle_per_host: usize::MAX,
        }
    }

    /// A request with any method.
    pub fn request(&self, method: Method, url: impl AsRef<str>) -> RequestBuilder {
        RequestBuilder {
            client: self.clone(),
            method,
            url: url.as_ref().to_string(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    pub fn get(&self, url: impl AsRef<str>) -> RequestBuilder {
        self.request(Method::GET, url)
    }

    pub fn post(&self, url: impl AsRef<str>) -> RequestBuilder {
        self.request(Method::POST, url)
    }

    pub fn put(&self, url: impl AsRef<str>) -> RequestBuilder {
        self.request(Method::PUT, url)
    }

    pub fn delete(&self, url: impl AsRef<str>) -> RequestBuilder {
        self.request(Method::DELETE, url)
    }
}

/// A request being built.
pub struct RequestBuilder {
    client: Client,
    method: Method,
    url: String,
    headers: HeaderMap,
    body: Bytes,
}

/// What can go wrong sending a request.
#[derive(Debug)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl RequestBuilder {
    /// Adds a header (an invalid name or value fails the test).
    pub fn header(mut self, name: &str, value: impl AsRef<str>) -> Self {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("header name");
        let value = HeaderValue::from_str(value.as_ref()).expect("header value");
        self.headers.append(name, value);
        self
    }

    /// A JSON body (and its content type).
    pub fn json(mut self, value: &impl serde::Serialize) -> Self {
        self.body = Bytes::from(serde_json::to_vec(value).expect("JSON body"));
        self.headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        self
    }

    /// A raw body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Sends the request; the answer's head has arrived when this returns.
    pub async fn send(self) -> Result<Response, Error> {
        let mut request = http::Request::builder()
            .method(self.method)
            .uri(&self.url)
            .body(Full::new(self.body))
            .map_err(|e| Error(format!("{}: {e}", self.url)))?;
        request.headers_mut().extend(self.headers);
        let response = self
            .client
            .inner
            .request(request)
            .await
            .map_err(|e| Error(format!("{}: {e:?}", self.url)))?;
        Ok(Response { inner: response })
    }
}

/// An answer.
pub struct Response {
    inner: http::Response<Incoming>,
}

impl Response {
    pub fn status(&self) -> StatusCode {
        self.inner.status()
    }

    pub fn headers(&self) -> &HeaderMap {
        self.inner.headers()
    }

    /// The whole body.
    pub async fn bytes(self) -> Result<Bytes, Error> {
        self.inner
            .into_body()
            .collect()
            .await
            .map(|collected| collected.to_bytes())
            .map_err(|e| Error(format!("body: {e}")))
    }

    /// The whole body as UTF-8 text (lossy).
    pub async fn text(self) -> Result<String, Error> {
        let bytes = self.bytes().await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The whole body as JSON.
    pub async fn json<T: serde::de::DeserializeOwned>(self) -> Result<T, Error> {
        let bytes = self.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|e| Error(format!("not JSON: {e}")))
    }

    /// The body as a stream of chunks, as they arrive.
    pub fn bytes_stream(self) -> BodyDataStream<Incoming> {
        BodyDataStream::new(self.inner.into_body())
    }
}
