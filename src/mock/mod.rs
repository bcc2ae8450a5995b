//! The HTTP mock and proxy server (`inframock mock`, and the stack's `mock` service).
//!
//! Requests to admin routes (`/mocker/*`, `/setscenario`, `/requests`) change or read the mock;
//! every other request is answered by the scenario (for `/`), the newest matching expectation, the
//! upstream (`--upstream`), or a 404 listing the closest expectations. Every answered request goes
//! to the bounded journal.

pub mod backend_log;
pub mod expectation;
pub mod files;
pub mod flaky;
pub mod handler;
pub mod journal;
pub mod proxy;
pub mod routes;
pub mod scenario;
pub mod server;
pub mod sinks;
pub mod store;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::stack::ports::{find_listener, PortInUse};
use handler::HandlerRunner;
use journal::Journal;
use routes::Routes;
use scenario::Scenario;
use server::MockState;
use store::Store;

/// Default port of the mock server.
pub const DEFAULT_PORT: u16 = 8080;

/// How to run the mock server.
#[derive(Debug, Clone)]
pub struct MockOptions {
    /// Address to listen on (127.0.0.1 unless told otherwise).
    pub bind: IpAddr,
    /// Port (0 picks a free one).
    pub port: u16,
    /// The flag that sets the port, named when it is taken.
    pub port_flag: &'static str,
    /// Where unmatched requests go that no route takes.
    pub upstream: Option<String>,
    /// Declared routes, each with its proxy policy.
    pub routes: Vec<routes::RouteDecl>,
    /// The scenario seed's mimicked backend, when wanted.
    pub flaky: Option<flaky::FlakySettings>,
    /// Answer a scenario step whose status is not 200 with a bare 500, as the seed did.
    pub scenario_errors_as_500: bool,
    /// Event sinks (the seed's ingestion and logger services) and the folder of their files.
    pub sinks: Vec<sinks::SinkDecl>,
    pub sinks_dir: PathBuf,
    /// Folder of `*.json` expectations loaded at start, also the base of handler paths.
    pub mocks_dir: PathBuf,
    /// Whether a missing mocks folder is an error (it was named explicitly).
    pub mocks_required: bool,
    /// Requests kept in the journal.
    pub journal_capacity: usize,
    /// Answer admin routes from any address.
    pub admin_any_host: bool,
    /// The sandbox of handlers (or why this machine refuses them).
    pub sandbox: Result<crate::python::Sandbox, String>,
    /// Timeout, limit and hedge of the catch-all upstream.
    pub upstream_policy: proxy::ProxyPolicy,
    /// Where failures of upstreams are appended as JSON lines.
    pub backend_errors_log: PathBuf,
    /// Longest time a client may take to send a request's headers.
    pub header_timeout: std::time::Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

/// A running mock server.
pub struct MockServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Expectations loaded from the mocks folder.
    pub loaded: usize,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl MockServer {
    /// Loads the mocks folder, binds the port and starts serving in the background.
    pub async fn start(options: MockOptions) -> Result<MockServer> {
        let loaded = files::load_dir(&options.mocks_dir, options.mocks_required)
            .map_err(anyhow::Error::msg)?;
        if let Some(flaky) = &options.flaky {
            flaky.validate().map_err(anyhow::Error::msg)?;
        }
        let sinks = options
            .sinks
            .iter()
            .map(|decl| sinks::Sink::new(decl.clone(), &options.sinks_dir))
            .collect::<Result<Vec<_>, _>>()
            .map_err(anyhow::Error::msg)?;
        let routes = Routes::new(
            &options.routes,
            options.upstream.as_deref(),
            options.upstream_policy,
        )
        .map_err(anyhow::Error::msg)?;
        let count = loaded.len();
        let store = Store::new(loaded, options.mocks_dir.clone()).map_err(anyhow::Error::msg)?;
        let state = Arc::new(MockState {
            store,
            scenario: Scenario::default(),
            journal: Journal::new(options.journal_capacity),
            routes,
            handlers: HandlerRunner::new(
                options.sandbox.clone(),
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
            admin_any_host: options.admin_any_host,
            flaky: options.flaky.clone().map(flaky::Flaky::new),
            sinks,
            scenario_errors_as_500: options.scenario_errors_as_500,
            backend_errors: backend_log::BackendErrorLog::new(options.backend_errors_log.clone()),
        });
        let listener = match TcpListener::bind((options.bind, options.port)).await {
            Ok(listener) => listener,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                return Err(PortInUse {
                    port: options.port,
                    flag: options.port_flag.to_string(),
                    holder: find_listener(options.port),
                }
                .into())
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "cannot listen on {}:{} ({})",
                        options.bind, options.port, options.port_flag
                    )
                })
            }
        };
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let limits = ConnectionLimits {
            header_timeout: options.header_timeout,
            open: Arc::new(tokio::sync::Semaphore::new(options.max_connections)),
        };
        let task = tokio::spawn(accept_loop(listener, state, limits, stopped));
        Ok(MockServer {
            addr,
            loaded: count,
            stop,
            task,
        })
    }

    /// Stops accepting connections and waits for the accept loop to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// What one client may hold of the server.
struct ConnectionLimits {
    /// Time to send a request's headers (slow-header clients are closed).
    header_timeout: std::time::Duration,
    /// One permit per open connection; none left: a new connection is closed at once.
    open: Arc<tokio::sync::Semaphore>,
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<MockState>,
    limits: ConnectionLimits,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment instead of spinning.
                    eprintln!("mock: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.changed() => return,
        };
        let Ok(permit) = Arc::clone(&limits.open).try_acquire_owned() else {
            // Full: refusing this one keeps the server answering the connections it has.
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            let service =
                service_fn(move |request| server::handle(Arc::clone(&state), peer, request));
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout);
            // A client that goes away mid-request is not an error of the mock.
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
    }
}
