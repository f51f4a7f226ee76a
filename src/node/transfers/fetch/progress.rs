//! A fetch as `/fetch-progress` and `/fetches` show it
//! (docs/client-api.md): sizes, speed, status, and each host's share,
//! speed and state. Pure: reads a [`Job`], returns JSON.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::job::Job;
use super::peers::PeerState;
use super::record::Status;

const SPEED_WINDOW: Duration = Duration::from_secs(3);

pub fn progress_json(job: &Job, now: Instant) -> Value {
    let r = &job.rec;
    let status = job.phase.status();
    let running = status == Status::Downloading;
    let downloaded = job.received().min(r.total_size);
    let speed = match (status, r.finished_at) {
        _ if running => speed_bps(&job.samples, downloaded, now),
        (Status::Completed, Some(end)) => average_bps(r.total_size, end - r.started_at),
        _ => 0,
    };
    let left = r.total_size.saturating_sub(downloaded);
    let eta = if status == Status::Completed {
        Some(0)
    } else if running && speed > 0 {
        Some(left.div_ceil(speed))
    } else {
        None
    };
    let percent = if r.total_size == 0 {
        if status == Status::Completed {
            100.0
        } else {
            0.0
        }
    } else {
        (downloaded as f64 * 1000.0 / r.total_size as f64).floor() / 10.0
    };
    let links = job.phase.transfer().map(|t| &t.links[..]).unwrap_or(&[]);
    let total_bytes: u64 = r.peers.iter().map(|p| p.bytes).sum();
    let peers: Vec<Value> = r
        .peers
        .iter()
        .map(|p| {
            let link = links.iter().find(|l| l.host == p.hostname);
            let speed = match (p.state, link) {
                (PeerState::Active, Some(l)) => l.speed(now),
                _ => 0,
            };
            let share = if total_bytes == 0 {
                0.0
            } else {
                (p.bytes as f64 * 1000.0 / total_bytes as f64).round() / 10.0
            };
            json!({
                "hostname": p.hostname,
                "ip": p.ip,
                "port": p.port,
                "bytes": p.bytes,
                "share_percent": share,
                "speed_bps": speed,
                "state": p.state,
                "reason": p.reason,
            })
        })
        .collect();
    json!({
        "fetch_id": r.fetch_id,
        "file_name": r.file_name,
        "downloaded_size": if status == Status::Completed { r.total_size } else { downloaded },
        "total_size": r.total_size,
        "progress_percent": percent,
        "speed_bps": speed,
        "eta_seconds": eta,
        "status": status.word(),
        "peer": r.peer,
        "error": r.error,
        "save_path": r.save_path.to_string_lossy(),
        "sha256": r.sha256,
        "root": r.root,
        "share": r.share,
        "shared": r.shared,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "peers": peers,
    })
}

/// A finished download's speed: its size over its whole duration.
pub fn average_bps(bytes: u64, secs: f64) -> u64 {
    if bytes == 0 || !secs.is_finite() || secs <= 0.0 {
        return 0;
    }
    (bytes as f64 / secs.max(1e-6)) as u64
}

/// Bytes per second over the last few seconds: from the oldest sample in
/// the window to now, so a stalled transfer drops towards zero.
pub fn speed_bps(samples: &VecDeque<(Instant, u64)>, downloaded: u64, now: Instant) -> u64 {
    let base = samples
        .iter()
        .find(|(t, _)| now.saturating_duration_since(*t) <= SPEED_WINDOW)
        .or(samples.back());
    let Some(&(t, bytes)) = base else {
        return 0;
    };
    let span = now.saturating_duration_since(t).as_secs_f64();
    if span < 0.05 {
        return 0;
    }
    (downloaded.saturating_sub(bytes) as f64 / span) as u64
}

/// The sentence shown when every host failed.
pub fn final_error(job: &Job) -> String {
    let last = job
        .last_error
        .clone()
        .unwrap_or_else(|| "No host offers this version of the file".into());
    let others = if job.rec.hosts.len() > 1 {
        "no other host could provide the file"
    } else {
        "no other host has the file"
    };
    // Bytes received, verified or not: how far the transfer got.
    let got: u64 = job.rec.peers.iter().map(|p| p.bytes).sum();
    match &job.interrupted {
        Some(first) if got > 0 => {
            let got = human_bytes(got);
            if *first == last {
                format!("{first} after {got} and {others}")
            } else {
                format!("{first} after {got} and {others} (last try: {last})")
            }
        }
        _ => format!("{last}, and {others}"),
    }
}

/// "12.5 MB": decimal units, as people read download sizes.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} bytes")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(999), "999 bytes");
        assert_eq!(human_bytes(12_500_000), "12.5 MB");
        assert_eq!(human_bytes(1_073_741_824), "1.1 GB");
    }

    #[test]
    fn speed_uses_the_recent_window() {
        let t0 = Instant::now();
        let mut s = VecDeque::new();
        s.push_back((t0, 0));
        s.push_back((t0 + Duration::from_secs(5), 5_000));
        s.push_back((t0 + Duration::from_secs(6), 6_000));
        let now = t0 + Duration::from_secs(7);
        assert_eq!(speed_bps(&s, 7_000, now), 1_000);
        let later = t0 + Duration::from_secs(60);
        assert!(speed_bps(&s, 7_000, later) < 30);
    }

    #[test]
    fn a_finished_download_reports_its_average_speed() {
        assert_eq!(average_bps(10_000_000, 2.0), 5_000_000);
        assert_eq!(average_bps(0, 2.0), 0);
        assert_eq!(average_bps(10, -1.0), 0);
        assert_eq!(average_bps(10, f64::NAN), 0);
    }
}
