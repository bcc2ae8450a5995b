//! One TCP proxy: every connection to `listen` is forwarded to `target`. Client -> service bytes are
//! copied as they come; service -> client bytes pass the faults in force (latency, hiccup,
//! truncate). `failover` drops the open connections and refuses new ones until `respawn`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::ServiceFaults;

/// Bytes read per chunk.
const CHUNK: usize = 64 * 1024;

/// Accepts connections on `listener` and forwards each to `target` until the task is dropped.
pub async fn serve(listener: TcpListener, target: SocketAddr, faults: Arc<ServiceFaults>) {
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let faults = Arc::clone(&faults);
        tokio::spawn(async move { forward(client, target, faults).await });
    }
}

/// Closes a connection with a reset, so the client sees it refused rather than a clean end.
fn reset(client: TcpStream) {
    // A zero linger does not block on drop (the deprecation is about non-zero ones).
    #[allow(deprecated)]
    let _ = client.set_linger(Some(Duration::ZERO));
}

async fn forward(client: TcpStream, target: SocketAddr, faults: Arc<ServiceFaults>) {
    if faults.current().down {
        reset(client);
        return;
    }
    if let Some(code) = faults.take_opfail() {
        fail(client, code).await;
        return;
    }
    let Ok(server) = TcpStream::connect(target).await else {
        reset(client);
        return;
    };
    faults.connections.fetch_add(1, Ordering::Relaxed);
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let mut failover = faults.watch_failover();
    failover.borrow_and_update();
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let both = async {
        tokio::join!(
            copy_plain(client_read, server_write),
            copy_with_faults(server_read, client_write, &faults)
        )
    };
    tokio::select! {
        _ = both => {}
        // Dropping the halves closes both connections.
        _ = failover.changed() => {}
    }
}

/// Fails a connection for `opfail`: an HTTP status `code` (100-599) answered after the request's
/// first bytes, or closed at once.
async fn fail(mut client: TcpStream, code: Option<u16>) {
    let Some(status) = code.and_then(|c| http::StatusCode::from_u16(c).ok()) else {
        reset(client);
        return;
    };
    let mut request = vec![0u8; CHUNK];
    let _ = tokio::time::timeout(Duration::from_secs(1), client.read(&mut request)).await;
    let body = format!("inframock fault proxy: opfail answered {status}\n");
    let response = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    let _ = client.write_all(response.as_bytes()).await;
    let _ = client.shutdown().await;
}

async fn copy_plain(mut from: impl AsyncRead + Unpin, mut to: impl AsyncWrite + Unpin) {
    let mut buffer = vec![0u8; CHUNK];
    loop {
        match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buffer[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

async fn copy_with_faults(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    faults: &ServiceFaults,
) {
    let mut buffer = vec![0u8; CHUNK];
    let mut jitter = Jitter::new();
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buffer[..n];
        if faults.is_active() {
            let settings = faults.current();
            if let Some(latency) = settings.latency {
                let extra = jitter.below(latency.jitter);
                tokio::time::sleep(Duration::from_millis(latency.ms.saturating_add(extra))).await;
            }
            if let Some(limit) = faults.take_truncate() {
                let keep = (limit as usize).min(n);
                let _ = to.write_all(&chunk[..keep]).await;
                let _ = to.shutdown().await;
                return;
            }
            if let Some(hiccup) = settings.hiccup {
                let offset = hiccup.offset as usize;
                if n > offset {
                    if to.write_all(&chunk[..offset]).await.is_err() {
                        break;
                    }
                    let _ = to.flush().await;
                    tokio::time::sleep(Duration::from_millis(hiccup.msecs)).await;
                    if to.write_all(&chunk[offset..]).await.is_err() {
                        break;
                    }
                    continue;
                }
            }
        }
        if to.write_all(chunk).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// A small xorshift generator for latency jitter (no need for cryptographic randomness).
struct Jitter(u64);

impl Jitter {
    fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15);
        Jitter(seed | 1)
    }

    /// A number in `0..=max`.
    fn below(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        match max.checked_add(1) {
            Some(range) => self.0 % range,
            None => self.0,
        }
    }
}
