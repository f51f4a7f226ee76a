//! Which hosts a fetch used, how much each sent, and which it dropped and
//! why: shown in `/fetch-progress` as `peers` and kept in the fetch record,
//! so a host dropped for bad bytes stays dropped across retries and
//! restarts. Pure bookkeeping on a short list (one entry per host used).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerState {
    /// Sending bytes now.
    Active,
    /// Sent what it could and stopped (finished, or its connection ended).
    Done,
    /// Its bytes failed verification: never asked again in this fetch.
    Dropped,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerUse {
    pub hostname: String,
    pub ip: String,
    pub port: u16,
    /// Payload bytes received from it (all attempts).
    pub bytes: u64,
    pub state: PeerState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn entry<'a>(peers: &'a mut Vec<PeerUse>, hostname: &str, ip: &str, port: u16) -> &'a mut PeerUse {
    let i = match peers.iter().position(|p| p.hostname == hostname) {
        Some(i) => i,
        None => {
            peers.push(PeerUse {
                hostname: hostname.to_owned(),
                ip: ip.to_owned(),
                port,
                bytes: 0,
                state: PeerState::Done,
                reason: None,
            });
            peers.len() - 1
        }
    };
    &mut peers[i]
}

/// `hostname` is connected and asked for data (several hosts may be).
pub fn activate(peers: &mut Vec<PeerUse>, hostname: &str, ip: &str, port: u16) {
    let p = entry(peers, hostname, ip, port);
    if p.state != PeerState::Dropped {
        p.state = PeerState::Active;
    }
}

/// Payload bytes from `hostname`.
pub fn add_bytes(peers: &mut [PeerUse], hostname: &str, n: u64) {
    if let Some(p) = peers.iter_mut().find(|p| p.hostname == hostname) {
        p.bytes += n;
    }
}

/// `hostname` stopped sending (its connection ended).
pub fn stop(peers: &mut [PeerUse], hostname: &str) {
    for p in peers
        .iter_mut()
        .filter(|p| p.hostname == hostname && p.state == PeerState::Active)
    {
        p.state = PeerState::Done;
    }
}

/// Every host stopped (a pause, the end, a restart).
pub fn stop_all(peers: &mut [PeerUse]) {
    for p in peers.iter_mut().filter(|p| p.state == PeerState::Active) {
        p.state = PeerState::Done;
    }
}

pub fn drop_host(peers: &mut Vec<PeerUse>, hostname: &str, ip: &str, port: u16, reason: &str) {
    let p = entry(peers, hostname, ip, port);
    p.state = PeerState::Dropped;
    p.reason = Some(reason.to_owned());
}

pub fn is_dropped(peers: &[PeerUse], hostname: &str) -> bool {
    peers
        .iter()
        .any(|p| p.hostname == hostname && p.state == PeerState::Dropped)
}

/// "dropped erin (127.0.0.1:6001): <reason>; …", or None if none was.
pub fn dropped_summary(peers: &[PeerUse]) -> Option<String> {
    let parts: Vec<String> = peers
        .iter()
        .filter(|p| p.state == PeerState::Dropped)
        .map(|p| {
            format!(
                "{} ({}:{}): {}",
                p.hostname,
                p.ip,
                p.port,
                p.reason.as_deref().unwrap_or("dropped")
            )
        })
        .collect();
    (!parts.is_empty()).then(|| format!("dropped {}", parts.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_counted_stopped_and_dropped() {
        let mut v = Vec::new();
        activate(&mut v, "erin", "10.0.0.5", 6001);
        add_bytes(&mut v, "erin", 100);
        activate(&mut v, "alice", "10.0.0.1", 6000);
        add_bytes(&mut v, "alice", 7);
        assert_eq!(v[0].state, PeerState::Active, "several hosts at once");
        stop(&mut v, "erin");
        assert_eq!(v[0].state, PeerState::Done);
        assert_eq!((v[0].bytes, v[1].bytes), (100, 7));
        drop_host(&mut v, "erin", "10.0.0.5", 6001, "bad bytes");
        assert!(is_dropped(&v, "erin") && !is_dropped(&v, "alice"));
        // A dropped host never becomes active again.
        activate(&mut v, "erin", "10.0.0.5", 6001);
        assert_eq!(v[0].state, PeerState::Dropped);
        assert_eq!(
            dropped_summary(&v).unwrap(),
            "dropped erin (10.0.0.5:6001): bad bytes"
        );
        stop_all(&mut v);
        assert!(v.iter().all(|p| p.state != PeerState::Active));
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json[0]["state"], "dropped");
        assert_eq!(json[1]["state"], "done");
        assert!(json[1].get("reason").is_none());
    }
}
