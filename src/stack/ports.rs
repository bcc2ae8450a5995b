//! Port pre-flight: is a port on 127.0.0.1 free, and if not, which process holds it.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};

/// A port that is already taken, with its holder when we could find it.
#[derive(Debug, thiserror::Error)]
#[error("port {port} ({flag}) is already in use{}; stop that process, or choose another port {} (0 picks a free one)", holder_text(.holder), how_to_choose(.flag))]
pub struct PortInUse {
    pub port: u16,
    /// The flag that sets this port, named in the message.
    pub flag: String,
    pub holder: Option<PortHolder>,
}

/// The process listening on a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortHolder {
    pub pid: u32,
    pub command: String,
}

/// `with --aws-port PORT` for a flag; `in <setting>` for a stack file setting.
fn how_to_choose(flag: &str) -> String {
    if flag.starts_with("--") {
        format!("with {flag} PORT")
    } else {
        format!("in {flag}")
    }
}

fn holder_text(holder: &Option<PortHolder>) -> String {
    match holder {
        Some(h) => format!(" by pid {} ({})", h.pid, h.command),
        None => String::new(),
    }
}

/// Ports this process has handed out. The kernel may give a port it just gave (and that was let
/// go before the service bound it) a second time: two services of one stack once got the same
/// port and one of them could not start.
static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// The lowest port a free port is picked from.
const PICK_FROM: u16 = 10_000;

/// Where free ports are picked: from [`PICK_FROM`] up to the kernel's ephemeral range, whose ports
/// outgoing connections take as their own. A port the kernel hands out for `bind(0)` comes from
/// that range, so between the check and the service binding it a connection could take it (a test
/// run saw moto refuse such a port: "Address already in use"). `None` when the range starts too
/// low to leave room.
fn pick_range() -> Option<(u16, u16)> {
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    (ephemeral_start > PICK_FROM + 1_000).then_some((PICK_FROM, ephemeral_start))
}

/// A pseudo-random number, different in each process and at each call.
fn scatter(call: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x =
        nanos ^ (u64::from(std::process::id()) << 32) ^ call.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // splitmix64's finalizer.
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A free port on 127.0.0.1, never one this process handed out before: one that binds, at random
/// below the ephemeral range ([`pick_range`]), else the kernel's choice.
pub fn pick_free_port() -> std::io::Result<u16> {
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((low, high)) = pick_range() {
        for call in 0..256u64 {
            let port = low + (scatter(call) % u64::from(high - low)) as u16;
            if handed_out.contains(&port) {
                continue;
            }
            if TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).is_ok() {
                handed_out.insert(port);
                return Ok(port);
            }
        }
    }
    for _ in 0..256 {
        let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        if handed_out.insert(port) {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no free port that this process has not handed out already",
    ))
}

/// Resolves a requested port: 0 becomes a free port; any other port must be free.
pub fn claim(port: u16, flag: &str) -> Result<u16, PortInUse> {
    if port == 0 {
        return pick_free_port().map_err(|_| PortInUse {
            port,
            flag: flag.to_string(),
            holder: None,
        });
    }
    match TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)) {
        Ok(_) => Ok(port),
        Err(_) => Err(PortInUse {
            port,
            flag: flag.to_string(),
            holder: find_listener(port),
        }),
    }
}

/// Finds the process listening on a TCP port, through /proc (Linux); `None` elsewhere or when the
/// process belongs to another user.
pub fn find_listener(port: u16) -> Option<PortHolder> {
    let inodes: Vec<u64> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .flat_map(|table| listening_inodes(&table, port))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let processes = std::fs::read_dir("/proc").ok()?;
    for entry in processes.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            let holds = target
                .strip_prefix("socket:[")
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|inode| inode.parse::<u64>().ok())
                .is_some_and(|inode| inodes.contains(&inode));
            if holds {
                return Some(PortHolder {
                    pid,
                    command: process_command(pid).unwrap_or_else(|| "unknown".to_string()),
                });
            }
        }
    }
    None
}

/// The command line of a process, arguments joined by spaces.
pub fn process_command(pid: u32) -> Option<String> {
    Some(process_args(pid)?.join(" "))
}

/// The arguments of a process's command line, the program as it was invoked first; `None` when
/// it cannot be read or is empty.
pub fn process_args(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let parts: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    (!parts.is_empty()).then_some(parts)
}

/// Socket inodes in LISTEN state (0A) on `port` in a /proc/net/tcp table.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            let state = fields.get(3)?;
            let inode = fields.get(9)?;
            let local_port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            (local_port == port && *state == "0A").then(|| inode.parse().ok())?
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listening_sockets_from_proc_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:11D6 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0\n   1: 0100007F:11D6 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 999 1 0\n";
        assert_eq!(listening_inodes(table, 4566), vec![12345]);
        assert!(listening_inodes(table, 6379).is_empty());
    }

    #[test]
    fn a_taken_port_names_its_holder_and_the_flag() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let err = claim(port, "--aws-port").unwrap_err();
        assert_eq!(err.port, port);
        let holder = err.holder.clone().expect("our own process is found");
        assert_eq!(holder.pid, std::process::id());
        let text = err.to_string();
        assert!(
            text.contains(&format!(
                "port {port} (--aws-port) is already in use by pid"
            )),
            "{text}"
        );
        assert!(text.contains("--aws-port PORT"), "{text}");
        drop(listener);
        assert_eq!(claim(port, "--aws-port").unwrap(), port);
    }

    #[test]
    fn picked_ports_are_never_handed_out_twice() {
        let picked: Vec<u16> = (0..300).map(|_| pick_free_port().unwrap()).collect();
        let distinct: std::collections::BTreeSet<&u16> = picked.iter().collect();
        assert_eq!(distinct.len(), picked.len());
    }

    #[test]
    fn picked_ports_lie_below_the_ephemeral_range() {
        let Some((low, high)) = pick_range() else {
            return;
        };
        for _ in 0..50 {
            let port = pick_free_port().unwrap();
            assert!((low..high).contains(&port), "{port} not in {low}..{high}");
        }
    }

    #[test]
    fn zero_picks_a_free_port() {
        let port = claim(0, "--redis-port").unwrap();
        assert_ne!(port, 0);
        assert!(TcpListener::bind(("127.0.0.1", port)).is_ok());
    }
}
