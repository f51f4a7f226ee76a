//! `p2pshare get`'s progress: bytes, speed, ETA and peers from
//! `GET /fetch-progress/{id}` (`docs/client-api.md`), drawn as one line
//! redrawn in place on a terminal, or as a plain line every few seconds
//! (and at each change of state) when stdout is a pipe or a file. The
//! formatting is pure and tested here; [`Display`] only decides when to
//! write.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Between two plain lines when stdout is not a terminal.
pub const PLAIN_EVERY: Duration = Duration::from_secs(2);

/// One progress answer, as shown.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub name: String,
    pub downloaded: u64,
    pub total: u64,
    pub speed_bps: u64,
    pub eta_s: Option<u64>,
    pub status: String,
    /// Hosts sending bytes now, and hosts used so far.
    pub active_peers: usize,
    pub peers: usize,
    pub error: Option<String>,
    pub save_path: Option<String>,
}

impl Snapshot {
    pub fn from_json(v: &Value) -> Snapshot {
        let u = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let peers = v.get("peers").and_then(Value::as_array);
        let active = peers.map_or(0, |p| {
            p.iter()
                .filter(|x| x.get("state").and_then(Value::as_str) == Some("active"))
                .count()
        });
        Snapshot {
            name: s("file_name").unwrap_or_default(),
            downloaded: u("downloaded_size"),
            total: u("total_size"),
            speed_bps: u("speed_bps"),
            eta_s: v.get("eta_seconds").and_then(Value::as_u64),
            status: s("status").unwrap_or_default(),
            active_peers: active,
            peers: peers.map_or(0, Vec::len),
            error: s("error").filter(|e| !e.is_empty()),
            save_path: s("save_path"),
        }
    }

    pub fn is_final(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "failed" | "cancelled")
    }

    fn percent(&self) -> f64 {
        if self.total == 0 {
            if self.status == "completed" {
                100.0
            } else {
                0.0
            }
        } else {
            (self.downloaded.min(self.total) as f64 * 100.0) / self.total as f64
        }
    }

    fn peers_text(n: usize) -> String {
        format!("{n} peer{}", if n == 1 { "" } else { "s" })
    }

    /// `40.0%  4.0 MiB/10.0 MiB  1.0 MiB/s  ETA 6s  1 peer` while
    /// downloading; the state word otherwise (`completed` last, for scripts).
    fn figures(&self) -> String {
        let mut s = format!(
            "{:>5.1}%  {}/{}",
            self.percent(),
            bytes(self.downloaded),
            bytes(self.total)
        );
        match self.status.as_str() {
            "downloading" => {
                s.push_str(&format!("  {}/s", bytes(self.speed_bps)));
                if let Some(eta) = self.eta_s {
                    s.push_str(&format!("  ETA {}", duration(eta)));
                }
                match self.active_peers {
                    0 => s.push_str("  waiting for a peer"),
                    n => s.push_str(&format!("  {}", Snapshot::peers_text(n))),
                }
            }
            "completed" => {
                if self.speed_bps > 0 {
                    s.push_str(&format!("  avg {}/s", bytes(self.speed_bps)));
                }
                if self.peers > 0 {
                    s.push_str(&format!("  from {}", Snapshot::peers_text(self.peers)));
                }
                s.push_str("  completed");
            }
            other => s.push_str(&format!("  {other}")),
        }
        s
    }
}

/// `1023 B`, `1.5 KiB`, `10.0 MiB`, `2.3 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", UNITS[i])
}

/// `42s`, `3m05s`, `2h07m`.
pub fn duration(s: u64) -> String {
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The terminal line: name, a bar, the figures; cut to `width` columns so
/// it never wraps (a wrapped line cannot be redrawn in place).
pub fn tty_line(s: &Snapshot, width: usize) -> String {
    let figures = s.figures();
    let room = width.saturating_sub(1);
    let name = cut(&s.name, 24);
    // The bar takes what the name and the figures leave, up to 20 columns.
    let spare = room.saturating_sub(name.chars().count() + figures.chars().count() + 6);
    let bar_w = spare.min(20);
    let line = if bar_w >= 5 {
        let filled = (((s.percent() / 100.0) * bar_w as f64).round() as usize).min(bar_w);
        format!(
            "{name}  [{}{}]  {figures}",
            "#".repeat(filled),
            "-".repeat(bar_w - filled)
        )
    } else {
        format!("{name}  {figures}")
    };
    cut(&line, room)
}

/// A plain line for logs and pipes.
pub fn plain_line(s: &Snapshot) -> String {
    format!("{}  {}", s.name, s.figures())
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Writes progress to stdout as it comes.
pub struct Display {
    tty: bool,
    width: usize,
    last_plain: Option<(Instant, String)>,
    drawn: bool,
}

impl Display {
    pub fn new(tty: bool, width: usize) -> Display {
        Display {
            tty,
            width,
            last_plain: None,
            drawn: false,
        }
    }

    /// Shows `s` at `now`: redrawn on a terminal; on a pipe, a line when
    /// the state changed or [`PLAIN_EVERY`] has passed.
    pub fn show(&mut self, s: &Snapshot, now: Instant) {
        let mut out = std::io::stdout().lock();
        if self.tty {
            let _ = write!(out, "\r{}\x1b[K", tty_line(s, self.width));
            self.drawn = true;
        } else {
            let due = match &self.last_plain {
                None => true,
                Some((at, status)) => *status != s.status || now.duration_since(*at) >= PLAIN_EVERY,
            };
            if due {
                let _ = writeln!(out, "{}", plain_line(s));
                self.last_plain = Some((now, s.status.clone()));
            }
        }
        let _ = out.flush();
    }

    /// The last state, always shown, and the line ended.
    pub fn finish(&mut self, s: &Snapshot) {
        let mut out = std::io::stdout().lock();
        if self.tty {
            let _ = writeln!(out, "\r{}\x1b[K", tty_line(s, self.width));
        } else if self.last_plain.as_ref().map(|(_, st)| st) != Some(&s.status) {
            let _ = writeln!(out, "{}", plain_line(s));
        }
        self.drawn = false;
        let _ = out.flush();
    }

    /// Ends a half-drawn terminal line before other output.
    pub fn interrupt(&mut self) {
        if self.tty && self.drawn {
            println!();
            self.drawn = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(10 * 1024 * 1024), "10.0 MiB");
        assert_eq!(bytes(u64::MAX), "16384.0 PiB");
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(185), "3m05s");
        assert_eq!(duration(7620), "2h07m");
    }

    fn sample() -> Snapshot {
        Snapshot::from_json(&json!({
            "file_name": "report.pdf", "downloaded_size": 4u64 << 20, "total_size": 10u64 << 20,
            "speed_bps": 1u64 << 20, "eta_seconds": 6, "status": "downloading",
            "peers": [{"hostname": "a", "state": "active"}, {"hostname": "b", "state": "dropped"}]
        }))
    }

    #[test]
    fn a_progress_answer_becomes_one_line() {
        let s = sample();
        assert_eq!(
            plain_line(&s),
            "report.pdf   40.0%  4.0 MiB/10.0 MiB  1.0 MiB/s  ETA 6s  1 peer"
        );
        let t = tty_line(&s, 100);
        assert!(
            t.starts_with("report.pdf  [########------------]   40.0%"),
            "{t}"
        );
        let t = tty_line(&s, 80);
        assert!(t.ends_with("1 peer") && t.contains("[#"), "{t}");
        for w in [10, 40, 60, 200] {
            assert!(tty_line(&s, w).chars().count() < w.max(10), "width {w}");
        }
        let done = Snapshot {
            status: "completed".into(),
            downloaded: 10 << 20,
            ..sample()
        };
        assert_eq!(
            plain_line(&done),
            "report.pdf  100.0%  10.0 MiB/10.0 MiB  avg 1.0 MiB/s  from 2 peers  completed"
        );
        let verifying = Snapshot {
            status: "verifying".into(),
            ..sample()
        };
        assert!(plain_line(&verifying).ends_with("4.0 MiB/10.0 MiB  verifying"));
    }
}
