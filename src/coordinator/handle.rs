//! What a registry request does: from (registry, request, who asks) to a
//! typed reply and the change it makes to the connection's identity. No
//! I/O, no framing, no connection table: `conn.rs` frames lines, keeps the
//! connections, applies the [`Effect`] and writes the encoded reply
//! (docs/registry-protocol.md says what each action answers).

use std::net::IpAddr;

use reactor::ConnId;

use super::registry::{HostKey, ListParts};
use super::Coordinator;
use crate::auth::jwt;
use crate::proto::registry::{self, Reply, Request};

/// Who sends a request, as the connection layer knows it.
pub(super) struct Context {
    pub conn: ConnId,
    /// The host this connection is bound to (after REGISTER).
    pub bound: Option<HostKey>,
    /// The address the connection comes from (filled for REGISTER only).
    pub seen_ip: Option<IpAddr>,
    /// Unix seconds, read once per batch of lines.
    pub now: f64,
}

/// What a request comes to.
pub(super) enum Answer<'r> {
    /// Encode and queue this reply.
    Reply(Reply<'r>),
    /// A LIST page, or a whole LIST gathered a moment ago: queue its shared pieces.
    Pieces(ListParts),
    /// A whole LIST still to gather: answer when it is.
    AfterGather,
    /// A LIST page whose query's matches are still being collected: the
    /// request is read again once they are.
    AfterQuery,
}

/// How a request changes which connection speaks for which host.
pub(super) enum Effect {
    None,
    /// REGISTER succeeded: this connection is `host` now; `replaced` is the
    /// connection that spoke for it before, which speaks for nobody now.
    Bound {
        host: HostKey,
        anonymous: bool,
        replaced: Option<ConnId>,
    },
    /// UNREGISTER removed `host`; `conn` was bound to it.
    Removed {
        host: HostKey,
        conn: Option<ConnId>,
    },
}

impl Coordinator {
    /// Answers one request. `Err` is an ERROR reason; nothing has changed
    /// then except the sender's `last_seen`.
    pub(super) fn handle_request(
        &mut self,
        req: Request,
        cx: &Context,
    ) -> Result<(Answer<'_>, Effect), &'static str> {
        let now = cx.now;
        // Every message refreshes the sender's last_seen.
        if let Some(k) = cx.bound {
            self.registry.touch(k, now);
        }
        let reply = match req {
            Request::Register {
                hostname,
                port,
                ip,
                display_name,
                files,
                token,
            } => {
                if let Some(k) = cx.bound {
                    if self.registry.get(k).is_some_and(|h| *h.name != *hostname) {
                        return Err("forbidden");
                    }
                }
                // The display name is the account's, never the claim; a host
                // without a token has no account, and keeps its claim.
                let (anonymous, display_name) = match token.as_deref() {
                    None if self.cfg.allow_anonymous => {
                        // No anonymous takeover of a name a token holds or
                        // held, nor of an account's name.
                        if self.token_bound.contains_key(&hostname) || self.users.exists(&hostname)
                        {
                            return Err("forbidden");
                        }
                        (
                            true,
                            display_name.map(|d| d.into_owned()).unwrap_or_default(),
                        )
                    }
                    None => return Err("unauthorized"),
                    Some(t) => {
                        let (claims, token_id) =
                            jwt::verify_with_id(&self.jwt_secret, t, now as u64)
                                .map_err(|_| "unauthorized")?;
                        if self.revoked.contains_key(&token_id) {
                            return Err("unauthorized");
                        }
                        if claims.sub != *hostname {
                            return Err("forbidden");
                        }
                        let dn = self.users.display_name(&hostname).unwrap_or_default();
                        (false, dn)
                    }
                };
                if files.len() > self.cfg.max_files_per_host {
                    return Err("too many files");
                }
                if !anonymous && !self.token_bound.contains_key(&hostname) {
                    self.token_bound.insert(hostname.as_ref().into(), ());
                }
                let ip = self.stored_ip(cx.seen_ip, ip.as_deref());
                // A host that registers again from a new connection takes
                // over; the old connection no longer speaks for it.
                let replaced = self
                    .registry
                    .key(&hostname)
                    .and_then(|k| self.registry.get(k))
                    .and_then(|h| h.conn)
                    .filter(|&old| old != cx.conn);
                let host = self.registry.register(
                    &hostname,
                    &display_name,
                    &ip,
                    port,
                    files,
                    Some(cx.conn),
                    now,
                );
                return Ok((
                    Answer::Reply(Reply::Ok),
                    Effect::Bound {
                        host,
                        anonymous,
                        replaced,
                    },
                ));
            }
            Request::Publish {
                hostname,
                fname,
                meta,
            } => {
                let k = self.acting_host(cx.bound, &hostname)?;
                self.registry.touch(k, now);
                if !self.registry.has_file(k, &fname)
                    && self.registry.file_count(k) >= self.cfg.max_files_per_host
                {
                    return Err("too many files");
                }
                self.registry.publish(k, &fname, meta);
                Reply::Ack
            }
            Request::Unpublish { hostname, fname } => {
                let k = self.acting_host(cx.bound, &hostname)?;
                self.registry.touch(k, now);
                if !self.registry.unpublish(k, &fname) {
                    return Err("file not found");
                }
                Reply::Ack
            }
            Request::Request { fname, sha256 } => {
                self.registry.request_reply(&fname, sha256.as_deref())
            }
            Request::Discover { hostname } => self
                .registry
                .discover_reply(&hostname)
                .ok_or("unknown host")?,
            Request::Ping { hostname, state } => {
                // A connection naming its own host (nearly every PING) needs
                // no lookup by name: two per PING were a tenth of the
                // pipelined load's instructions.
                let asked = match cx.bound {
                    Some(k) if self.registry.get(k).is_some_and(|h| *h.name == *hostname) => {
                        Some(k)
                    }
                    _ => self.registry.key(&hostname),
                };
                let sender = match cx.bound {
                    Some(k) => Some(k),
                    // Seed clients heartbeat on a fresh connection, naming
                    // themselves (never a host a token speaks for).
                    None if self.cfg.allow_anonymous
                        && !self.token_bound.contains_key(&hostname) =>
                    {
                        asked
                    }
                    None => None,
                };
                if let (Some(k), Some(st)) = (sender, state) {
                    if asked == Some(k) {
                        self.registry.set_state(k, st);
                    }
                }
                // A bound sender was touched above, with every message.
                if let (None, Some(k)) = (cx.bound, sender) {
                    self.registry.touch(k, now);
                }
                if asked
                    .and_then(|k| self.registry.get(k))
                    .is_some_and(|h| h.online)
                {
                    Reply::Alive
                } else {
                    Reply::Dead
                }
            }
            Request::List {
                offset,
                limit,
                query,
            } => {
                if offset.is_none() && limit.is_none() && query.is_none() {
                    return Ok((
                        match self.registry.fresh_list(now) {
                            Some(list) => Answer::Pieces(list),
                            None => Answer::AfterGather,
                        },
                        Effect::None,
                    ));
                }
                let limit = limit.unwrap_or(registry::MAX_PAGE);
                if let Some(q) = query.as_deref().filter(|q| !q.is_empty()) {
                    // A new query scans every host: in steps, never in one turn.
                    if !self.registry.query_step(q, super::registry::STEP_BUDGET) {
                        return Ok((Answer::AfterQuery, Effect::None));
                    }
                }
                // Shared pieces, not a copy: a page of 100 hosts is ~70 KB,
                // and copying it twice was a quarter of the 1k preset's
                // instructions (callgrind, BENCHMARKS.md).
                let page =
                    self.registry
                        .list_page_parts(offset.unwrap_or(0), limit, query.as_deref());
                return Ok((Answer::Pieces(page), Effect::None));
            }
            Request::Unregister { hostname } => {
                let host = self.acting_host(cx.bound, &hostname)?;
                // The connection bound to the host (this one, or under
                // --allow-anonymous possibly another) speaks for nobody now.
                let conn = self.registry.remove(host);
                return Ok((Answer::Reply(Reply::Ok), Effect::Removed { host, conn }));
            }
        };
        Ok((Answer::Reply(reply), Effect::None))
    }

    /// The host a connection bound to `bound` acts for when it names `hostname`.
    fn acting_host(&self, bound: Option<HostKey>, hostname: &str) -> Result<HostKey, &'static str> {
        match bound {
            Some(k) => match self.registry.get(k) {
                Some(h) if &*h.name == hostname => Ok(k),
                Some(_) => Err("forbidden"),
                None => Err("not registered"),
            },
            None if self.cfg.allow_anonymous => {
                // Seed clients act for a host by naming it; never for one
                // a token ever spoke for.
                if self.token_bound.contains_key(hostname) {
                    return Err("forbidden");
                }
                self.registry.key(hostname).ok_or("not registered")
            }
            None => Err("not registered"),
        }
    }

    /// The address stored for a registering host: the one the connection
    /// comes from. The claimed one only from loopback (a node on this
    /// machine advertising its LAN address) or under `--trust-claimed-ip`.
    fn stored_ip(&self, seen: Option<IpAddr>, claimed: Option<&str>) -> String {
        let seen = seen.map(|ip| ip.to_canonical());
        let may_claim = self.cfg.trust_claimed_ip || seen.is_some_and(|ip| ip.is_loopback());
        match (claimed.filter(|c| !c.is_empty()), seen) {
            (Some(c), _) if may_claim => c.to_string(),
            (_, Some(ip)) => ip.to_string(),
            (_, None) => String::new(),
        }
    }
}
