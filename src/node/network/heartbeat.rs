//! The heartbeat of one user's session: which state it is in (idle, active,
//! busy) and when the next PING is due. Pure: no I/O, no timers; the node's
//! cron tick asks it and sends the PING itself.
//!
//! Two modes (docs/registry-protocol.md, "Liveness"). `Connection`, the
//! default: the open, registered connection is the host's liveness (TCP
//! keepalive on both ends finds a dead peer), so a PING goes out only when
//! the state changes, or after `nat_keepalive` without one. `Adaptive`: the
//! seed design's PING every interval of the current state, for registries
//! that judge liveness by messages alone.

use crate::proto::registry::HeartbeatState;

use std::time::{Duration, Instant};

/// The seed design's three states, each with its own interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// No transfer and no recent use: the longest interval.
    Idle,
    /// The user used the client API within the active window.
    Active,
    /// A download or an upload is running: the shortest interval.
    Busy,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Active => "active",
            State::Busy => "busy",
        }
    }

    /// The state as a PING carries it.
    pub fn wire(self) -> HeartbeatState {
        match self {
            State::Idle => HeartbeatState::Idle,
            State::Active => HeartbeatState::Active,
            State::Busy => HeartbeatState::Busy,
        }
    }
}

/// Intervals per state and the active window, from the configuration.
/// When PINGs go out (see the module comment).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    Connection { nat_keepalive: Duration },
    Adaptive,
}

#[derive(Clone, Copy, Debug)]
pub struct Intervals {
    pub mode: Mode,
    pub idle: Duration,
    pub active: Duration,
    pub busy: Duration,
    /// How long after the last use the state stays "active".
    pub active_window: Duration,
}

impl Intervals {
    /// Seconds as configured; anything not positive falls back to 0.1 s so
    /// a bad value cannot make the loop spin.
    pub fn from_secs(idle: f64, active: f64, busy: f64, window: f64) -> Intervals {
        let d = |s: f64| Duration::from_secs_f64(if s.is_finite() && s > 0.1 { s } else { 0.1 });
        Intervals {
            mode: Mode::Adaptive,
            idle: d(idle),
            active: d(active),
            busy: d(busy),
            active_window: if window.is_finite() && window > 0.0 {
                Duration::from_secs_f64(window)
            } else {
                Duration::ZERO
            },
        }
    }

    /// The same intervals, PINGing only on a state change and after
    /// `nat_keepalive` of silence.
    pub fn on_connection(mut self, nat_keepalive: Duration) -> Intervals {
        self.mode = Mode::Connection { nat_keepalive };
        self
    }

    /// How long until the next PING at most in state `s`.
    pub fn due_after(&self, s: State) -> Duration {
        match self.mode {
            Mode::Connection { nat_keepalive } => nat_keepalive,
            Mode::Adaptive => self.of(s),
        }
    }

    pub fn of(&self, s: State) -> Duration {
        match s {
            State::Idle => self.idle,
            State::Active => self.active,
            State::Busy => self.busy,
        }
    }

    /// The state for a user with `transfers` running, last using the API at `last_use`.
    pub fn classify(&self, transfers: usize, last_use: Instant, now: Instant) -> State {
        if transfers > 0 {
            State::Busy
        } else if now.saturating_duration_since(last_use) < self.active_window {
            State::Active
        } else {
            State::Idle
        }
    }
}

/// One session's heartbeat schedule.
#[derive(Debug)]
pub struct Heartbeat {
    state: State,
    /// When the schedule was last anchored: the last PING, or the registration.
    anchor: Option<Instant>,
    next_at: Option<Instant>,
    sent: u64,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat {
            state: State::Active,
            anchor: None,
            next_at: None,
            sent: 0,
        }
    }
}

impl Heartbeat {
    pub fn state(&self) -> State {
        self.state
    }

    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// The registry accepted us: the first PING is one interval away.
    pub fn start(&mut self, iv: &Intervals, now: Instant) {
        self.anchor = Some(now);
        self.next_at = Some(now + iv.due_after(self.state));
    }

    /// The registry connection is gone: nothing to send until `start`.
    pub fn stop(&mut self) {
        self.anchor = None;
        self.next_at = None;
    }

    /// Takes the current state. On a change the next PING is re-planned one
    /// new interval after the last one, so a shorter interval pulls it in and
    /// a longer one lets it wait; never in the past.
    pub fn update(&mut self, iv: &Intervals, state: State, now: Instant) {
        if state == self.state {
            return;
        }
        self.state = state;
        if let (Some(anchor), Some(_)) = (self.anchor, self.next_at) {
            self.next_at = Some(match iv.mode {
                // The registry learns of a change at once.
                Mode::Connection { .. } => now,
                Mode::Adaptive => (anchor + iv.of(state)).max(now),
            });
        }
    }

    pub fn due(&self, now: Instant) -> bool {
        self.next_at.is_some_and(|t| now >= t)
    }

    /// A PING went out now.
    pub fn record_sent(&mut self, iv: &Intervals, now: Instant) {
        self.sent += 1;
        self.anchor = Some(now);
        self.next_at = Some(now + iv.due_after(self.state));
    }

    /// Seconds until the next PING, if one is planned.
    pub fn next_in(&self, now: Instant) -> Option<Duration> {
        self.next_at.map(|t| t.saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv() -> Intervals {
        Intervals::from_secs(300.0, 60.0, 30.0, 300.0)
    }

    #[test]
    fn classifies_by_transfers_then_recent_use() {
        let iv = iv();
        let t0 = Instant::now();
        assert_eq!(iv.classify(1, t0, t0), State::Busy);
        assert_eq!(
            iv.classify(2, t0, t0 + Duration::from_secs(1000)),
            State::Busy
        );
        assert_eq!(
            iv.classify(0, t0, t0 + Duration::from_secs(299)),
            State::Active
        );
        assert_eq!(
            iv.classify(0, t0, t0 + Duration::from_secs(300)),
            State::Idle
        );
    }

    #[test]
    fn pings_follow_the_interval_of_the_state() {
        let iv = iv();
        let t0 = Instant::now();
        let mut hb = Heartbeat::default();
        assert!(!hb.due(t0 + Duration::from_secs(10_000)), "not started");
        hb.start(&iv, t0);
        assert!(!hb.due(t0 + Duration::from_secs(59)));
        assert!(hb.due(t0 + Duration::from_secs(60)));
        hb.record_sent(&iv, t0 + Duration::from_secs(60));
        assert_eq!(hb.sent(), 1);
        // Going idle lets the next PING wait 300 s after the last one.
        hb.update(&iv, State::Idle, t0 + Duration::from_secs(70));
        assert!(!hb.due(t0 + Duration::from_secs(200)));
        assert!(hb.due(t0 + Duration::from_secs(360)));
    }

    #[test]
    fn a_shorter_interval_pulls_the_next_ping_in() {
        let iv = iv();
        let t0 = Instant::now();
        let mut hb = Heartbeat::default();
        hb.update(&iv, State::Idle, t0);
        hb.start(&iv, t0);
        assert!(!hb.due(t0 + Duration::from_secs(100)));
        // A transfer starts 10 s in: due 30 s after the anchor.
        hb.update(&iv, State::Busy, t0 + Duration::from_secs(10));
        assert!(!hb.due(t0 + Duration::from_secs(29)));
        assert!(hb.due(t0 + Duration::from_secs(30)));
        // Becoming busy long after the anchor means "now", never the past.
        let mut hb = Heartbeat::default();
        hb.update(&iv, State::Idle, t0);
        hb.start(&iv, t0);
        let later = t0 + Duration::from_secs(200);
        hb.update(&iv, State::Busy, later);
        assert_eq!(hb.next_in(later), Some(Duration::ZERO));
    }

    #[test]
    fn stop_cancels_and_bad_intervals_are_clamped() {
        let iv = Intervals::from_secs(0.0, -1.0, f64::NAN, -5.0);
        assert_eq!(iv.busy, Duration::from_millis(100));
        assert_eq!(iv.active_window, Duration::ZERO);
        let t0 = Instant::now();
        let mut hb = Heartbeat::default();
        hb.start(&iv, t0);
        hb.stop();
        assert!(!hb.due(t0 + Duration::from_secs(1000)));
        assert_eq!(hb.next_in(t0), None);
    }

    #[test]
    fn on_the_connection_a_ping_goes_out_only_on_a_change_or_after_the_nat_keepalive() {
        let iv = iv().on_connection(Duration::from_secs(3600));
        let t0 = Instant::now();
        let mut hb = Heartbeat::default();
        hb.start(&iv, t0);
        // No PING after REGISTER, none at the adaptive intervals.
        assert!(!hb.due(t0));
        assert!(!hb.due(t0 + Duration::from_secs(301)));
        // A change is sent at once.
        let t1 = t0 + Duration::from_secs(400);
        hb.update(&iv, State::Busy, t1);
        assert!(hb.due(t1));
        hb.record_sent(&iv, t1);
        assert!(!hb.due(t1 + Duration::from_secs(3599)));
        // Silence for the NAT keepalive: one PING.
        assert!(hb.due(t1 + Duration::from_secs(3600)));
        assert_eq!(hb.sent(), 1);
    }
}
