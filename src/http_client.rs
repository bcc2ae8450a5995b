//! A small HTTP client for the CLI's questions to our own servers (mock admin, fault control,
//! the scenario of `bench --scenario`, an endpoint's plain answers).

use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// One request: the answer's status and whole body. The error says that nothing answers at
/// `url` (with the cause), or that the answer broke off.
async fn exchange(
    method: http::Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<(http::StatusCode, Bytes)> {
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("{url:?} is not a URL"))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = http::Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(body))
        .with_context(|| format!("cannot build a request to {url}"))?;
    let response = client.request(request).await.map_err(|e| {
        anyhow::anyhow!(
            "no server answers at {url} ({})",
            crate::mock::proxy::error_chain(&e)
        )
    })?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .with_context(|| format!("{url}: the answer broke off"))?
        .to_bytes();
    Ok((status, body))
}

/// `exchange` within `timeout`; running out of time is an error naming the URL.
async fn exchange_within(
    timeout: Duration,
    method: http::Method,
    url: &str,
    body: Bytes,
) -> Result<(http::StatusCode, Bytes)> {
    exchange_with_headers_within(timeout, method, url, &[], body).await
}

/// `exchange` with extra request headers, within `timeout`.
async fn exchange_with_headers_within(
    timeout: Duration,
    method: http::Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<(http::StatusCode, Bytes)> {
    tokio::time::timeout(timeout, exchange(method, url, headers, body))
        .await
        .with_context(|| format!("{url} did not answer within {} s", timeout.as_secs()))?
}

/// `GET base + path_and_query`, expecting JSON. `hint` says how to get a server there when none
/// answers; a non-2xx answer is an error carrying the server's `error` message.
pub async fn get_json(base: &str, hint: &str, path_and_query: &str) -> Result<Value> {
    if base.parse::<http::Uri>().is_err() {
        bail!("--url {base:?} is not a URL");
    }
    let url = format!("{base}{path_and_query}");
    let (status, body) = exchange(http::Method::GET, &url, &[], Bytes::new())
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}; {hint}"))?;
    let value: Value = serde_json::from_slice(&body).with_context(|| {
        format!("{url} answered something that is not JSON; is it an inframock server?")
    })?;
    if !status.is_success() {
        bail!(
            "{url} answered {status}: {}",
            value["error"].as_str().unwrap_or(&value.to_string())
        );
    }
    Ok(value)
}

/// `POST url` with an empty body; the answer's status (the body is read and dropped). `None` when
/// nothing answers within `timeout`.
pub async fn post_empty(url: &str, timeout: Duration) -> Result<Option<http::StatusCode>> {
    Ok(
        exchange_within(timeout, http::Method::POST, url, Bytes::new())
            .await
            .ok()
            .map(|(status, _)| status),
    )
}

/// `POST url` with `body`; the answer's status and body.
pub async fn post_bytes(
    url: &str,
    body: Bytes,
    timeout: Duration,
) -> Result<(http::StatusCode, Bytes)> {
    exchange_within(timeout, http::Method::POST, url, body).await
}

/// `POST url` with `headers` and `body`; the answer's status and body, within `timeout`.
pub async fn post_with_headers(
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
    timeout: Duration,
) -> Result<(http::StatusCode, Bytes)> {
    exchange_with_headers_within(timeout, http::Method::POST, url, headers, body).await
}

/// Any request with `body`: the answer's status and body, within `timeout`.
pub async fn send(
    method: http::Method,
    url: &str,
    body: Bytes,
    timeout: Duration,
) -> Result<(http::StatusCode, Bytes)> {
    exchange_within(timeout, method, url, body).await
}

/// `GET url`: the answer's status and body as text, within `timeout`.
pub async fn get_text(url: &str, timeout: Duration) -> Result<(http::StatusCode, String)> {
    let (status, body) = exchange_within(timeout, http::Method::GET, url, Bytes::new()).await?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
