//! The syntax of single values: addresses, URLs, port ranges, rates, and
//! where the home directory is.

use std::collections::HashMap;
use std::path::PathBuf;

/// `HOST:PORT` with a non-empty host and a port 1-65535.
pub(super) fn valid_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && !host.contains(['/', ' '])
                && port.parse::<u16>().is_ok_and(|p| p != 0)
        }
        None => false,
    }
}

/// `http://HOST:PORT` (one trailing slash tolerated), returned without the slash.
pub(super) fn normalize_api_url(s: &str) -> Option<String> {
    let rest = s.strip_prefix("http://")?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    valid_host_port(authority).then(|| format!("http://{authority}"))
}

pub(super) fn parse_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// `20MB`, `512KB`, `1.5MiB`, `1000000` (bytes per second; K/M/G are powers of
/// 1000, Ki/Mi/Gi of 1024, a trailing `B` or `/s` optional). At least 1 byte/s.
pub fn parse_rate(v: &str) -> Option<u64> {
    let v = v.trim();
    let v = v.strip_suffix("/s").unwrap_or(v);
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024.0 * 1024.0,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = n * mult;
    (bytes.is_finite() && (1.0..=1e15).contains(&bytes)).then_some(bytes as u64)
}

/// The home directory of the account running this process: `$HOME`, else the
/// password database's entry for the effective user.
pub(super) fn home_dir(env: &HashMap<String, String>) -> Option<PathBuf> {
    if let Some(h) = env.get("HOME").filter(|h| h.starts_with('/')) {
        return Some(PathBuf::from(h));
    }
    // SAFETY: getpwuid_r writes only into the buffers we pass; the returned
    // pointer, when non-null, points into `pw`/`buf`, which outlive its use.
    unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(
            libc::geteuid(),
            &mut pw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut out,
        );
        if rc != 0 || out.is_null() || pw.pw_dir.is_null() {
            return None;
        }
        let dir = std::ffi::CStr::from_ptr(pw.pw_dir).to_str().ok()?;
        dir.starts_with('/').then(|| PathBuf::from(dir))
    }
}
