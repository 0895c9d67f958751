//! systemd readiness and watchdog notifications (`sd_notify`), without
//! libsystemd: one datagram per message to the socket named by
//! `NOTIFY_SOCKET` (a path, or `@name` for an abstract socket).
//!
//! Without `NOTIFY_SOCKET` (not started by systemd with `Type=notify`) every
//! call is a no-op. Failures are logged, never fatal: a lost notification must
//! not stop the server.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use log::warn;

/// Sends `state` (newline-separated `KEY=VALUE` lines, e.g. `READY=1`) to the
/// socket named `socket` in `NOTIFY_SOCKET` syntax.
pub fn send_to(socket: &str, state: &str) -> io::Result<()> {
    let addr = if let Some(name) = socket.strip_prefix('@') {
        SocketAddr::from_abstract_name(name.as_bytes())?
    } else if socket.starts_with('/') {
        SocketAddr::from_pathname(socket)?
    } else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unsupported NOTIFY_SOCKET {socket:?} (expected /path or @abstract)"),
        ));
    };
    let sock = UnixDatagram::unbound()?;
    let sent = sock.send_to_addr(state.as_bytes(), &addr)?;
    if sent != state.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short write to NOTIFY_SOCKET",
        ));
    }
    Ok(())
}

/// Sends `state` to `$NOTIFY_SOCKET`; `Ok(false)` when the variable is unset.
pub fn send(state: &str) -> io::Result<bool> {
    match std::env::var("NOTIFY_SOCKET") {
        Ok(socket) if !socket.is_empty() => send_to(&socket, state).map(|()| true),
        _ => Ok(false),
    }
}

fn send_logged(state: &str) {
    if let Err(e) = send(state) {
        warn!("sd_notify {state:?} failed: {e}");
    }
}

/// Tells systemd that start-up is complete (`READY=1`) with a status line.
pub fn ready(status: &str) {
    send_logged(&format!("READY=1\nSTATUS={status}"));
}

/// Tells systemd that a reload (`SIGHUP`) has begun (`RELOADING=1`); the
/// next [`ready`] ends it.
pub fn reloading() {
    send_logged("RELOADING=1\nSTATUS=reloading");
}

/// Tells systemd that an orderly stop has begun (`STOPPING=1`).
pub fn stopping() {
    send_logged("STOPPING=1\nSTATUS=stopping");
}

/// The ping interval asked for by `WATCHDOG_USEC` (half of it, as
/// `sd_watchdog_enabled` advises), when the watchdog is meant for this process
/// (`WATCHDOG_PID` unset or equal to `pid`).
pub fn watchdog_interval(
    usec: Option<&str>,
    watchdog_pid: Option<&str>,
    pid: u32,
) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(p) = watchdog_pid {
        if p.trim().parse::<u32>().ok() != Some(pid) {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2))
}

/// Starts a thread that sends `WATCHDOG=1` at half of `WATCHDOG_USEC`, when
/// systemd asked for it (`WatchdogSec=` in the unit). Returns whether it
/// started. The pings stop only with the process, so a hung or killed process
/// is what the watchdog catches.
pub fn start_watchdog() -> bool {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    let Some(every) = watchdog_interval(usec.as_deref(), pid.as_deref(), std::process::id()) else {
        return false;
    };
    let spawned = std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || loop {
            send_logged("WATCHDOG=1");
            std::thread::sleep(every);
        });
    match spawned {
        Ok(_) => true,
        Err(e) => {
            warn!("cannot start the systemd watchdog thread: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn temp_path(tag: &str) -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        std::env::temp_dir().join(format!(
            "herald-notify-{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }

    fn recv(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_to_a_path_socket() {
        let path = temp_path("path");
        let listener = UnixDatagram::bind(&path).unwrap();
        send_to(path.to_str().unwrap(), "READY=1\nSTATUS=x").unwrap();
        assert_eq!(recv(&listener), "READY=1\nSTATUS=x");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        let name = format!("herald-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        send_to(&format!("@{name}"), "STOPPING=1").unwrap();
        assert_eq!(recv(&listener), "STOPPING=1");
    }

    #[test]
    fn reports_a_missing_or_odd_socket() {
        let missing = temp_path("missing");
        assert!(send_to(missing.to_str().unwrap(), "READY=1").is_err());
        assert_eq!(
            send_to("vsock:2:1234", "READY=1").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn watchdog_interval_is_half_of_watchdog_usec() {
        assert_eq!(
            watchdog_interval(Some("30000000"), None, 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            watchdog_interval(Some("2000000"), Some("7"), 7),
            Some(Duration::from_secs(1))
        );
        assert_eq!(watchdog_interval(Some("2000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(None, None, 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
    }
}
