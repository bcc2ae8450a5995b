//! A small HTTP client for the CLI's questions to our own servers (mock admin, fault control).

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// `GET base + path_and_query`, expecting JSON. `hint` says how to get a server there when none
/// answers; a non-2xx answer is an error carrying the server's `error` message.
pub async fn get_json(base: &str, hint: &str, path_and_query: &str) -> Result<Value> {
    let url = format!("{base}{path_and_query}");
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("--url {base:?} is not a URL"))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = client.get(uri).await.map_err(|e| {
        anyhow::anyhow!(
            "no server answers at {base} ({}); {hint}",
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
pub async fn post_empty(
    url: &str,
    timeout: std::time::Duration,
) -> Result<Option<http::StatusCode>> {
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("{url:?} is not a URL"))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let request = http::Request::post(uri)
        .body(Empty::<Bytes>::new())
        .with_context(|| format!("cannot build a request to {url}"))?;
    let exchange = async {
        let response = client.request(request).await?;
        let status = response.status();
        let _ = response.into_body().collect().await;
        Ok::<_, hyper_util::client::legacy::Error>(status)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(status)) => Ok(Some(status)),
        Ok(Err(_)) | Err(_) => Ok(None),
    }
}

/// `POST url` with `body`; the answer's status and body. The error names the URL and, when
/// nothing answers, says so.
pub async fn post_bytes(
    url: &str,
    body: Bytes,
    timeout: std::time::Duration,
) -> Result<(http::StatusCode, Bytes)> {
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("{url:?} is not a URL"))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<http_body_util::Full<Bytes>>();
    let request = http::Request::post(uri)
        .body(http_body_util::Full::new(body))
        .with_context(|| format!("cannot build a request to {url}"))?;
    let exchange = async {
        let response = client.request(request).await.map_err(|e| {
            anyhow::anyhow!(
                "nothing answers at {url} ({})",
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
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .with_context(|| format!("{url} did not answer within {} s", timeout.as_secs()))?
}

/// `GET url`: the answer's status and body as text, within `timeout`.
pub async fn get_text(
    url: &str,
    timeout: std::time::Duration,
) -> Result<(http::StatusCode, String)> {
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("{url:?} is not a URL"))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let exchange = async {
        let response = client
            .get(uri)
            .await
            .map_err(|e| anyhow::anyhow!("{url}: {}", crate::mock::proxy::error_chain(&e)))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .with_context(|| format!("{url}: the answer broke off"))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .with_context(|| format!("{url} did not answer within {} s", timeout.as_secs()))?
}
