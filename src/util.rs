//! Small helpers every part of the crate uses, written once: wall-clock
//! time as the protocols carry it, lowercase hex, and what to do and say when
//! a listener's port is busy. No I/O beyond a clock read and the note
//! [`listen_moving`] prints.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, as the registry's and the APIs' timestamps
/// are (0 for a clock set before 1970, which nothing here can fix).
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Whole seconds since the Unix epoch (token times, expiries).
pub fn unix_secs() -> u64 {
    unix_now() as u64
}

/// Lowercase hex, as SHA-256 digests and ids are written everywhere.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    crate::proto::registry::push_hex(&mut out, bytes);
    // Hex digits are ASCII.
    String::from_utf8(out).unwrap_or_default()
}

/// Why a listener could not be bound, in words that say what to change:
/// a busy port names the flag and variable that pick another.
pub fn listen_failure(
    what: &str,
    addr: std::net::SocketAddr,
    e: &std::io::Error,
    flag: &str,
    env: &str,
) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "cannot listen for {what} on {addr}: the port is already in use (another p2pshare, or another program); pick another with {flag} PORT or {env}=PORT"
        ),
        std::io::ErrorKind::PermissionDenied => format!(
            "cannot listen for {what} on {addr}: not allowed to use that port (ports below 1024 need privileges); pick another with {flag} PORT or {env}=PORT"
        ),
        std::io::ErrorKind::AddrNotAvailable => format!(
            "cannot listen for {what} on {addr}: that address is not one of this machine's"
        ),
        _ => format!("cannot listen for {what} on {addr}: {e}"),
    }
}

/// Binds a listener through `listen` on `addr`. When the port is busy and
/// `movable` (a default nobody chose, `Config::unchosen_ports`), binds a free
/// port instead and prints a line saying so; otherwise a busy port is the
/// error [`listen_failure`] words, naming the flag.
pub fn listen_moving<T>(
    what: &str,
    addr: std::net::SocketAddr,
    movable: bool,
    flag: &str,
    env: &str,
    mut listen: impl FnMut(std::net::SocketAddr) -> std::io::Result<(T, std::net::SocketAddr)>,
) -> Result<(T, std::net::SocketAddr), String> {
    match listen(addr) {
        Err(e) if movable && e.kind() == std::io::ErrorKind::AddrInUse => {
            let any = std::net::SocketAddr::new(addr.ip(), 0);
            let (l, local) = listen(any).map_err(|e| listen_failure(what, any, &e, flag, env))?;
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", moved_note(what, addr.port(), local.port(), flag));
            let _ = out.flush();
            Ok((l, local))
        }
        r => r.map_err(|e| listen_failure(what, addr, &e, flag, env)),
    }
}

/// The line [`listen_moving`] prints when it moved off a busy default port.
pub fn moved_note(what: &str, busy: u16, now: u16, flag: &str) -> String {
    format!(
        "the default port {busy} for {what} is in use, so {what} listens on port {now} instead (choose one with {flag} PORT)"
    )
}

/// An error message without the " (os error N)" the standard library
/// appends: users read "Connection refused", not an errno.
pub fn without_errno(msg: &str) -> String {
    match msg.rfind(" (os error ") {
        Some(i) if msg.ends_with(')') => msg[..i].to_owned(),
        _ => msg.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_and_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn only_a_movable_busy_port_moves() {
        use std::io::{Error, ErrorKind};
        use std::net::SocketAddr;
        let want: SocketAddr = "127.0.0.1:5501".parse().unwrap();
        // Busy at the default, free at port 0 (which the kernel picks).
        let fake = |a: SocketAddr| {
            if a.port() == 5501 {
                Err(Error::from(ErrorKind::AddrInUse))
            } else {
                Ok(((), SocketAddr::new(a.ip(), 41234)))
            }
        };
        let moved = listen_moving("the client API", want, true, "--client-api-port", "X", fake);
        assert_eq!(moved.unwrap().1.port(), 41234);
        let kept = listen_moving(
            "the client API",
            want,
            false,
            "--client-api-port",
            "X",
            fake,
        );
        let err = kept.unwrap_err();
        assert!(
            err.contains("--client-api-port PORT") && err.contains("in use"),
            "{err}"
        );
        // Other failures never move, movable or not.
        let denied = |_| -> std::io::Result<((), SocketAddr)> {
            Err(Error::from(ErrorKind::PermissionDenied))
        };
        let err = listen_moving(
            "the client API",
            want,
            true,
            "--client-api-port",
            "X",
            denied,
        );
        assert!(err.unwrap_err().contains("not allowed"));
    }

    #[test]
    fn errno_suffixes_are_dropped() {
        assert_eq!(
            super::without_errno("Connection refused (os error 111)"),
            "Connection refused"
        );
        assert_eq!(super::without_errno("timed out"), "timed out");
    }
}
