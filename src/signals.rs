//! Waiting for the request to stop a foreground command: Ctrl-C (SIGINT) or SIGTERM (what `stop`
//! and process supervisors send).

/// Returns once SIGINT or SIGTERM arrives (only SIGINT if SIGTERM cannot be watched).
pub async fn stop_requested() {
    use tokio::signal::unix::{signal, SignalKind};
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
