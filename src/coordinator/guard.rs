//! What a stranger may cost the coordinator, counted per source address: how
//! many registry connections it holds unbound (no REGISTER yet), and token
//! buckets for the account endpoints. Pure bookkeeping with the time passed
//! in; no I/O, no clock reads of its own.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Unbound registry connections one address may hold.
pub const MAX_UNBOUND_PER_ADDR: u32 = 256;
/// An unbound registry connection is closed after this long without a
/// complete line.
pub const UNBOUND_LINE_TIMEOUT: Duration = Duration::from_secs(30);
/// A connection accepted past the per-address cap may still bind itself
/// with REGISTER as its first line (many nodes behind one NAT reconnecting
/// at once); one that says nothing is refused after this long.
pub const OVER_CAP_GRACE: Duration = Duration::from_secs(5);
/// A stranger whose line has arrived but waits unread because the loop is
/// behind (a reconnect storm) is given this much more time, at most, in
/// steps of its own deadline: it is the coordinator that is late, not the
/// peer. A peer that sends nothing gains nothing from it.
pub const LATE_LOOP_GRACE: Duration = Duration::from_secs(120);

/// The key a limit is counted under: the address itself, or for IPv6 its
/// /64, since one subscriber commonly holds a whole /64.
pub fn addr_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut o = v6.octets();
                o[8..].fill(0);
                IpAddr::V6(o.into())
            }
        },
    }
}

/// Unbound registry connections per address. Entries exist only while the
/// count is above 0, so the map never outgrows the open connections.
#[derive(Default)]
pub struct UnboundCount {
    by_addr: HashMap<IpAddr, u32>,
}

impl UnboundCount {
    /// Counts a new connection from `ip`; false (and not counted) when the
    /// address already holds the maximum.
    pub fn try_add(&mut self, ip: IpAddr) -> bool {
        let n = self.by_addr.entry(ip).or_insert(0);
        if *n >= MAX_UNBOUND_PER_ADDR {
            return false;
        }
        *n += 1;
        true
    }

    /// A counted connection bound itself or closed.
    pub fn remove(&mut self, ip: IpAddr) {
        if let Some(n) = self.by_addr.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.by_addr.remove(&ip);
            }
        }
    }

    pub fn get(&self, ip: IpAddr) -> u32 {
        self.by_addr.get(&ip).copied().unwrap_or(0)
    }

    pub fn addresses(&self) -> usize {
        self.by_addr.len()
    }
}

/// Attempts allowed at once from one address.
pub const BURST: f64 = 20.0;
/// Then this many per second (10 per 10 s).
pub const REFILL_PER_S: f64 = 1.0;
/// Addresses tracked at most. A bucket that has refilled is forgotten (it
/// says nothing a fresh one would not), so only addresses that tried within
/// the last ~20 s are here; past this many, new addresses wait (429) rather
/// than grow the map.
pub const MAX_BUCKETS: usize = 100_000;

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn level(&self, now: Instant) -> f64 {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        (self.tokens + dt * REFILL_PER_S).min(BURST)
    }
}

/// Token buckets for register and login attempts, per address.
#[derive(Default)]
pub struct RateLimit {
    buckets: HashMap<IpAddr, Bucket>,
    last_purge: Option<Instant>,
}

impl RateLimit {
    /// Takes one attempt for `ip`: Ok, or Err(seconds to wait, at least 1).
    pub fn take(&mut self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= MAX_BUCKETS {
            // At most one full purge a second, so a flood of new addresses
            // cannot make every request scan the map.
            if self
                .last_purge
                .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1))
            {
                self.purge(now);
            }
            if self.buckets.len() >= MAX_BUCKETS {
                return Err(1);
            }
        }
        let b = self.buckets.entry(ip).or_insert(Bucket {
            tokens: BURST,
            at: now,
        });
        let level = b.level(now);
        b.at = now;
        if level >= 1.0 {
            b.tokens = level - 1.0;
            Ok(())
        } else {
            b.tokens = level;
            Err((((1.0 - level) / REFILL_PER_S).ceil() as u64).max(1))
        }
    }

    /// Forgets the buckets that have refilled: they hold no information.
    pub fn purge(&mut self, now: Instant) {
        self.last_purge = Some(now);
        self.buckets.retain(|_, b| b.level(now) < BURST);
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unbound_counts_stop_at_the_cap_and_vanish_at_zero() {
        let mut u = UnboundCount::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..MAX_UNBOUND_PER_ADDR {
            assert!(u.try_add(a));
        }
        assert!(!u.try_add(a));
        assert!(u.try_add(b), "another address is not affected");
        u.remove(a);
        assert!(u.try_add(a));
        for _ in 0..MAX_UNBOUND_PER_ADDR {
            u.remove(a);
        }
        u.remove(b);
        assert_eq!(u.addresses(), 0);
        u.remove(a);
        assert_eq!(u.get(a), 0);
    }

    #[test]
    fn a_burst_of_20_then_one_a_second() {
        let mut r = RateLimit::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..20 {
            assert!(r.take(ip, t0).is_ok());
        }
        assert_eq!(r.take(ip, t0), Err(1));
        assert!(r.take("10.0.0.2".parse().unwrap(), t0).is_ok());
        assert_eq!(r.take(ip, t0 + Duration::from_millis(400)), Err(1));
        assert!(r.take(ip, t0 + Duration::from_millis(1100)).is_ok());
        // One a second after that: 0.1 left at 1.1 s, 11 by 12 s.
        let t1 = t0 + Duration::from_secs(12);
        let mut ok = 0;
        for _ in 0..15 {
            ok += r.take(ip, t1).is_ok() as u32;
        }
        assert_eq!(ok, 11);
        // Refilled buckets are forgotten.
        r.purge(t1 + Duration::from_secs(30));
        assert!(r.is_empty());
    }

    #[test]
    fn the_bucket_map_is_bounded() {
        let mut r = RateLimit::default();
        let t0 = Instant::now();
        for i in 0..MAX_BUCKETS as u32 {
            let ip = IpAddr::V4(i.into());
            assert!(r.take(ip, t0).is_ok());
        }
        let new: IpAddr = "::1".parse().unwrap();
        assert_eq!(r.take(new, t0), Err(1), "full of fresh buckets");
        // Once they refill they are dropped and new addresses get in.
        assert!(r.take(new, t0 + Duration::from_secs(2)).is_ok());
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn ipv6_counts_per_64() {
        let a = addr_key("2001:db8::1".parse().unwrap());
        let b = addr_key("2001:db8::ffff:1".parse().unwrap());
        assert_eq!(a, b);
        assert_eq!(
            addr_key("::ffff:10.0.0.1".parse().unwrap()),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }
}
