//! The node's cache of bearer tokens: which user each one stands for and
//! until when. The node does not hold the coordinator's signing secret, so a
//! token is trusted only after the coordinator vouched for it (a login or
//! register answer, or `/api/user/verify`). No I/O; never logs a token.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Tokens remembered at most; beyond, the oldest-expiring are dropped first
/// (they are simply verified again when seen).
const MAX_KNOWN: usize = 10_000;
/// A token the coordinator refused is refused locally this long, so a client
/// repeating a bad token does not hammer the coordinator.
const BAD_TTL: Duration = Duration::from_secs(10);
const MAX_BAD: usize = 1_000;

/// What the cache knows about a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Vouched for and not expired: acts for this user.
    User(String),
    /// Never seen (or forgotten): ask the coordinator.
    Unknown,
    Expired,
    /// Logged out on this node.
    Revoked,
    /// The coordinator refused it a moment ago.
    Refused,
}

#[derive(Default)]
pub struct Tokens {
    known: HashMap<String, (String, u64)>,
    revoked: HashMap<String, u64>,
    bad: HashMap<String, Instant>,
}

impl Tokens {
    pub fn check(&self, token: &str, now_unix: u64, now: Instant) -> Check {
        if self.revoked.contains_key(token) {
            return Check::Revoked;
        }
        if let Some((user, exp)) = self.known.get(token) {
            return if *exp > now_unix {
                Check::User(user.clone())
            } else {
                Check::Expired
            };
        }
        if self
            .bad
            .get(token)
            .is_some_and(|t| now.saturating_duration_since(*t) < BAD_TTL)
        {
            return Check::Refused;
        }
        // An expired token needs no round trip to be refused.
        match unverified_claims(token) {
            Some((_, exp)) if exp <= now_unix => Check::Expired,
            _ => Check::Unknown,
        }
    }

    /// The coordinator vouched for `token` as `user`, valid until `exp`.
    pub fn learn(&mut self, token: &str, user: &str, exp: u64) {
        self.revoked.remove(token);
        self.bad.remove(token);
        if self.known.len() >= MAX_KNOWN && !self.known.contains_key(token) {
            if let Some(oldest) = self
                .known
                .iter()
                .min_by_key(|(_, (_, e))| *e)
                .map(|(k, _)| k.clone())
            {
                self.known.remove(&oldest);
            }
        }
        self.known.insert(token.to_owned(), (user.to_owned(), exp));
    }

    pub fn refused(&mut self, token: &str, now: Instant) {
        if self.bad.len() >= MAX_BAD {
            self.bad.clear();
        }
        self.bad.insert(token.to_owned(), now);
    }

    /// Logout: every token of `user` stops working on this node until it expires
    /// (it would otherwise be verified again and accepted).
    pub fn revoke_user(&mut self, user: &str) {
        let mine: Vec<String> = self
            .known
            .iter()
            .filter(|(_, (u, _))| u == user)
            .map(|(t, _)| t.clone())
            .collect();
        for t in mine {
            if let Some((_, exp)) = self.known.remove(&t) {
                self.revoked.insert(t, exp);
            }
        }
    }

    /// The freshest token of `user` (latest expiry), for REGISTER.
    pub fn freshest(&self, user: &str, now_unix: u64) -> Option<(String, u64)> {
        self.known
            .iter()
            .filter(|(_, (u, exp))| u == user && *exp > now_unix)
            .max_by_key(|(_, (_, exp))| *exp)
            .map(|(t, (_, exp))| (t.clone(), *exp))
    }

    /// Drops what has expired.
    pub fn purge(&mut self, now_unix: u64, now: Instant) {
        self.known.retain(|_, (_, exp)| *exp > now_unix);
        self.revoked.retain(|_, exp| *exp > now_unix);
        self.bad
            .retain(|_, t| now.saturating_duration_since(*t) < BAD_TTL);
    }
}

/// `sub` and `exp` read from a token's payload WITHOUT checking its signature:
/// only for tokens the coordinator itself just handed us or vouched for, and
/// to refuse an already expired token early.
pub fn unverified_claims(token: &str) -> Option<(String, u64)> {
    if token.len() > crate::auth::jwt::MAX_TOKEN_LEN {
        return None;
    }
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let sub = v.get("sub")?.as_str()?.to_owned();
    let exp = v.get("exp")?.as_f64()?;
    if !exp.is_finite() || exp < 0.0 {
        return None;
    }
    Some((sub, exp as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwt::{sign, Claims};

    fn token(sub: &str, exp: u64) -> String {
        sign(
            b"secret",
            &Claims {
                sub: sub.into(),
                role: "user".into(),
                iat: 1,
                exp,
            },
        )
    }

    #[test]
    fn learns_expires_and_revokes() {
        let now = Instant::now();
        let mut t = Tokens::default();
        let a = token("alice", 1000);
        assert_eq!(t.check(&a, 10, now), Check::Unknown);
        t.learn(&a, "alice", 1000);
        assert_eq!(t.check(&a, 10, now), Check::User("alice".into()));
        assert_eq!(t.check(&a, 1000, now), Check::Expired);
        assert_eq!(t.freshest("alice", 10), Some((a.clone(), 1000)));
        assert_eq!(t.freshest("bob", 10), None);
        t.revoke_user("alice");
        assert_eq!(t.check(&a, 10, now), Check::Revoked);
        // A new login handing the same token back makes it valid again.
        t.learn(&a, "alice", 1000);
        assert_eq!(t.check(&a, 10, now), Check::User("alice".into()));
        t.purge(2000, now);
        assert_eq!(t.check(&a, 10, now), Check::Unknown);
    }

    #[test]
    fn refuses_expired_and_recently_refused_tokens_without_asking() {
        let now = Instant::now();
        let mut t = Tokens::default();
        assert_eq!(t.check(&token("x", 5), 10, now), Check::Expired);
        assert_eq!(t.check("garbage", 10, now), Check::Unknown);
        t.refused("garbage", now);
        assert_eq!(t.check("garbage", 10, now), Check::Refused);
        assert_eq!(
            t.check("garbage", 10, now + BAD_TTL + Duration::from_secs(1)),
            Check::Unknown
        );
    }

    #[test]
    fn reads_claims_without_the_secret() {
        assert_eq!(
            unverified_claims(&token("bob", 77)),
            Some(("bob".into(), 77))
        );
        assert_eq!(unverified_claims("a.b.c"), None);
        assert_eq!(unverified_claims(""), None);
    }
}
