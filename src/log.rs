//! One-line, levelled logs on stderr with a UTC timestamp. It must never be handed
//! passwords, password hashes or tokens: keeping those out is each caller's duty.
//!
//! Use the crate-root macros: `log_error!`, `log_warn!`, `log_info!`, `log_debug!`,
//! which take `format!` arguments and skip formatting when the level is off.

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Severity, most severe first; a message is shown when its level is at or above the set one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// `error`, `warn`, `info` or `debug` (any case).
pub fn level_from_str(s: &str) -> Option<Level> {
    match s.to_ascii_lowercase().as_str() {
        "error" => Some(Level::Error),
        "warn" | "warning" => Some(Level::Warn),
        "info" => Some(Level::Info),
        "debug" => Some(Level::Debug),
        _ => None,
    }
}

pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

fn label(level: Level) -> &'static str {
    match level {
        Level::Error => "ERROR",
        Level::Warn => "WARN ",
        Level::Info => "INFO ",
        Level::Debug => "DEBUG",
    }
}

/// Format one line; the macros call this only when the level is enabled.
pub fn line(level: Level, args: std::fmt::Arguments<'_>) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut s = format!(
        "{} {} {}",
        utc_millis(now.as_secs(), now.subsec_millis()),
        label(level),
        args
    );
    // One record per line, whatever the message holds (e.g. a peer-supplied name).
    if s.contains(['\n', '\r']) {
        s = s.replace('\n', "\\n").replace('\r', "\\r");
    }
    s.push('\n');
    s
}

/// Write one line to stderr in a single call, so lines from threads never interleave.
pub fn write(level: Level, args: std::fmt::Arguments<'_>) {
    let s = line(level, args);
    let _ = std::io::stderr().lock().write_all(s.as_bytes());
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's civil_from_days).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn split(secs: u64) -> (i64, u32, u32, u64, u64, u64) {
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    (y, mo, d, rem / 3_600, rem % 3_600 / 60, rem % 60)
}

/// `2025-11-06T10:30:00Z` for Unix seconds.
pub fn utc_iso8601(secs: u64) -> String {
    let (y, mo, d, h, mi, s) = split(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `2025-11-06T10:30:00.123Z` for Unix seconds and milliseconds.
pub fn utc_millis(secs: u64, millis: u32) -> String {
    let (y, mo, d, h, mi, s) = split(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{millis:03}Z")
}

/// The current time as `2025-11-06T10:30:00Z`.
pub fn now_iso8601() -> String {
    utc_iso8601(crate::util::unix_secs())
}

#[macro_export]
macro_rules! log_at {
    ($level:expr, $($arg:tt)+) => {
        if $crate::log::enabled($level) {
            $crate::log::write($level, format_args!($($arg)+));
        }
    };
}

#[macro_export]
macro_rules! log_error {
    ($($arg:tt)+) => { $crate::log_at!($crate::log::Level::Error, $($arg)+) };
}

#[macro_export]
macro_rules! log_warn {
    ($($arg:tt)+) => { $crate::log_at!($crate::log::Level::Warn, $($arg)+) };
}

#[macro_export]
macro_rules! log_info {
    ($($arg:tt)+) => { $crate::log_at!($crate::log::Level::Info, $($arg)+) };
}

#[macro_export]
macro_rules! log_debug {
    ($($arg:tt)+) => { $crate::log_at!($crate::log::Level::Debug, $($arg)+) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(utc_iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_iso8601(1_762_425_000), "2025-11-06T10:30:00Z");
        assert_eq!(utc_millis(1_795_627_800, 123), "2026-11-25T17:30:00.123Z");
        assert_eq!(utc_iso8601(4_107_542_399), "2100-02-28T23:59:59Z");
        assert_eq!(utc_iso8601(4_107_542_400), "2100-03-01T00:00:00Z");
    }

    #[test]
    fn line_shape() {
        let l = line(Level::Info, format_args!("hello {}", 42));
        // 2026-11-25T17:30:00.123Z INFO  hello 42
        assert_eq!(&l[23..], "Z INFO  hello 42\n", "{l}");
        assert_eq!(l.as_bytes()[10], b'T');
        let w = line(Level::Warn, format_args!("a\nb"));
        assert!(w.ends_with("WARN  a\\nb\n"), "{w}");
    }

    #[test]
    fn levels_parse_and_order() {
        assert_eq!(level_from_str("DEBUG"), Some(Level::Debug));
        assert_eq!(level_from_str("warn"), Some(Level::Warn));
        assert_eq!(level_from_str("error"), Some(Level::Error));
        assert_eq!(level_from_str("info"), Some(Level::Info));
        assert_eq!(level_from_str("verbose"), None);
        assert!(Level::Error < Level::Debug);
    }

    #[test]
    fn threshold_and_macros() {
        // The only test touching the global level, so tests cannot race on it.
        set_level(Level::Warn);
        assert!(enabled(Level::Error) && enabled(Level::Warn));
        assert!(!enabled(Level::Info) && !enabled(Level::Debug));
        crate::log_debug!("not shown {}", 1);
        crate::log_warn!("shown {}", 2);
        set_level(Level::Info);
        assert!(enabled(Level::Info));
    }
}
