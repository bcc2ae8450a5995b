//! The harakiri monitor of the CouchbaseMock seed: `run --harakiri-monitor host:port` connects to a
//! test harness, sends the AWS edge port as ASCII followed by NUL, answers the fault commands the
//! harness sends as JSON lines, and the stack stops when the harness closes the connection. So a
//! harness in any language owns the stack's lifetime.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::line_reader::{BoundedLines, MAX_COMMAND_LINE};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::faults::control::parse_json_line;

/// Connects to the harness and sends the edge port (`"4566\0"`).
pub async fn connect(address: &str, edge_port: u16) -> Result<TcpStream> {
    let mut stream = TcpStream::connect(address).await.with_context(|| {
        format!(
            "--harakiri-monitor {address}: cannot connect; is the test harness listening there?"
        )
    })?;
    stream
        .write_all(format!("{edge_port}\0").as_bytes())
        .await
        .with_context(|| format!("--harakiri-monitor {address}: cannot send the port"))?;
    Ok(stream)
}

/// Answers the harness's commands until it closes the connection (then returns).
/// Commands go to the fault proxies' control port when there is one.
pub async fn serve(stream: TcpStream, control: Option<SocketAddr>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BoundedLines::new(read, MAX_COMMAND_LINE);
    let mut relay: Option<Relay> = None;
    while let Ok(Some(line)) = lines.next().await {
        let line = match line.text(MAX_COMMAND_LINE) {
            Ok(line) if line.trim().is_empty() => continue,
            Ok(line) => line,
            Err(error) => {
                let answer = json!({"status": "fail", "error": error});
                if write
                    .write_all(format!("{answer}\n").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
        };
        let answer = match (parse_json_line(&line), control) {
            (Err(error), _) => json!({"status": "fail", "error": error}).to_string(),
            (Ok(_), None) => json!({
                "status": "fail",
                "error": "no fault proxies run: set `faults = true` on a service in inframock.toml"
            })
            .to_string(),
            (Ok(_), Some(address)) => match forward(&mut relay, address, &line).await {
                Ok(answer) => answer,
                Err(error) => {
                    relay = None;
                    json!({"status": "fail", "error": format!("fault control at {address}: {error}")})
                        .to_string()
                }
            },
        };
        if write
            .write_all(format!("{answer}\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

/// A JSON-lines connection to the fault control port, opened on first use.
struct Relay {
    lines: BoundedLines<OwnedReadHalf>,
    write: OwnedWriteHalf,
}

async fn forward(
    relay: &mut Option<Relay>,
    address: SocketAddr,
    line: &str,
) -> std::io::Result<String> {
    if relay.is_none() {
        let (read, write) = TcpStream::connect(address).await?.into_split();
        *relay = Some(Relay {
            lines: BoundedLines::new(read, MAX_COMMAND_LINE),
            write,
        });
    }
    let Some(connection) = relay.as_mut() else {
        return Err(std::io::Error::other("no connection"));
    };
    connection
        .write
        .write_all(format!("{}\n", line.trim()).as_bytes())
        .await?;
    connection
        .lines
        .next()
        .await?
        .ok_or_else(|| std::io::Error::other("the control port closed the connection"))?
        .text(MAX_COMMAND_LINE)
        .map_err(std::io::Error::other)
}
