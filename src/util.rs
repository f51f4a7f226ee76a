//! Small helpers every part of the crate uses, written once: wall-clock
//! time as the protocols carry it, and lowercase hex. No I/O beyond a clock read.

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
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
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
    fn errno_suffixes_are_dropped() {
        assert_eq!(
            super::without_errno("Connection refused (os error 111)"),
            "Connection refused"
        );
        assert_eq!(super::without_errno("timed out"), "timed out");
    }
}
