//! The physical limit for the mock benchmark: the smallest useful hyper server (HTTP/1.1,
//! keep-alive, tokio multi-thread runtime, a fixed 13-byte body). Also the upstream of the proxy
//! benchmark. `cargo build --release --example hello_hyper`; `hello_hyper PORT`.
//!
//! `hello_hyper PORT STALL_MS`: a server that stalls STALL_MS once a second — every request that
//! arrives in the first STALL_MS of a second waits until it ends (a GC pause, a lock, a flush).
//! The `benchtool` section of `make bench` shows that an open-loop load sees the stall and a
//! closed-loop one hides it.
//!
//! `hello_hyper PORT 0 DELAY_MS`: every answer waits DELAY_MS first (tokio's timer, so 1 ms is
//! 1-2 ms): a server whose own time dwarfs a load tool's, to compare what two tools measure of it.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(8081);
    let stall = Duration::from_millis(args.next().and_then(|s| s.parse().ok()).unwrap_or(0));
    let delay = Duration::from_millis(args.next().and_then(|s| s.parse().ok()).unwrap_or(0));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on 127.0.0.1:{}", listener.local_addr()?.port());
    let started = Instant::now();
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(move |_request| async move {
                if !stall.is_zero() {
                    let into_second =
                        Duration::from_nanos((started.elapsed().as_nanos() % 1_000_000_000) as u64);
                    if into_second < stall {
                        tokio::time::sleep(stall - into_second).await;
                    }
                }
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                    b"Hello, World!",
                ))))
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
