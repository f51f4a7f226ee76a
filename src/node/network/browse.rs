//! The network as this node's users see it: `GET network-files` and the
//! index the duplicate check of a publish reads. Walks of the registry's
//! LIST pages run on one user's registry connection and fill the shared
//! index (`network::NetCache`); requests that need it meanwhile wait on the
//! walk instead of starting their own. It never writes files and never
//! decides a publish (that is `routes`).

use std::rc::Rc;

use reactor::http::Request;
use reactor::Ctx;
use serde_json::json;

use crate::node::network::index::{self, Index, NetFile, OwnChange, Walk};
use crate::node::ops::Wait;
use crate::node::ops::{NetworkOp, OpKind, Outcome, PublishStage, Reply};
use crate::node::{Node, OpId};
use crate::proto::registry;

/// LIST pages are walked this far at most (1000 hosts each).
const MAX_LIST_PAGES: u32 = 200;
const LIST_PAGE: u64 = 1000;

fn list_page(offset: u64) -> registry::Request<'static> {
    registry::Request::List {
        offset: Some(offset),
        limit: Some(LIST_PAGE),
        query: None,
    }
}

/// How a walk ended without an index.
enum WalkFailed {
    /// The registry answered something that is not a LIST page.
    Unusable(String),
    /// The connection carrying it closed.
    LinkLost,
}

impl Node {
    pub(crate) fn api_network(
        &mut self,
        cx: &mut Ctx,
        op: OpId,
        user: &str,
        req: &Request,
    ) -> Outcome {
        let q = req.query_param("q").unwrap_or_default();
        let num = |k: &str, default: usize| -> Result<usize, Reply> {
            match req.query_param(k).filter(|v| !v.is_empty()) {
                None => Ok(default),
                Some(v) => v.parse::<usize>().map_err(|_| {
                    Reply::error(400, &format!("'{k}' must be a non-negative integer"))
                }),
            }
        };
        let offset = match num("offset", 0) {
            Ok(v) => v,
            Err(r) => return r.into(),
        };
        let limit = match num("limit", 100) {
            Ok(v) => v,
            Err(r) => return r.into(),
        };
        if limit == 0 {
            return Reply::error(400, "'limit' must be at least 1").into();
        }
        if let Err(r) = self.require_link(cx, user) {
            return r.into();
        }
        let n = NetworkOp {
            user: user.to_owned(),
            q,
            offset,
            limit: limit.min(1000),
        };
        match self.index_or_walk(cx, op, user) {
            Ok(Some(idx)) => network_page(&idx, &n).into(),
            Ok(None) => Outcome::Later(OpKind::Network(n)),
            Err(r) => r.into(),
        }
    }

    /// The fresh index of the user's registry, or `None` with `op` waiting
    /// for a walk (joined, or started on this user's connection).
    pub(crate) fn index_or_walk(
        &mut self,
        cx: &mut Ctx,
        op: OpId,
        user: &str,
    ) -> Result<Option<Rc<Index>>, Reply> {
        let now = cx.now();
        let Some(registry) = self
            .users
            .get(user)
            .and_then(|u| u.session.as_ref())
            .map(|s| s.registry)
        else {
            return Err(Reply::error(409, crate::node::ops::NOT_INITIALISED));
        };
        if let Some(idx) = self.net.fresh(registry, now) {
            return Ok(Some(idx));
        }
        if let Some(w) = self.net.walks.get_mut(&registry) {
            w.waiters.push(op);
            return Ok(None);
        }
        if !self.registry_send(cx, user, &list_page(0), Wait::Walk) {
            return Err(Reply::error(
                503,
                "Lost the connection to the coordinator; try again in a moment",
            ));
        }
        self.net.walks.insert(registry, Walk::new(user, now, op));
        Ok(None)
    }

    /// A LIST page of the walk `user`'s connection carries.
    pub(crate) fn walk_page(&mut self, cx: &mut Ctx, user: &str, v: registry::Reply<'static>) {
        let Some(registry) = self
            .users
            .get(user)
            .and_then(|u| u.session.as_ref())
            .map(|s| s.registry)
        else {
            return;
        };
        let Some(w) = self
            .net
            .walks
            .get_mut(&registry)
            .filter(|w| w.driver == user)
        else {
            return;
        };
        let next = match index::listed_hosts(v) {
            Ok((hosts, next)) => {
                w.index.add_page(hosts);
                next.filter(|_| w.pages < MAX_LIST_PAGES)
            }
            Err(e) => {
                let msg = format!("The coordinator's LIST answer was unusable: {e}");
                let waiters = self.net.walks.remove(&registry).map(|w| w.waiters);
                self.walk_failed(cx, waiters.unwrap_or_default(), WalkFailed::Unusable(msg));
                return;
            }
        };
        if let Some(next) = next {
            w.pages += 1;
            if !self.registry_send(cx, user, &list_page(next), Wait::Walk) {
                let waiters = self.net.walks.remove(&registry).map(|w| w.waiters);
                self.walk_failed(cx, waiters.unwrap_or_default(), WalkFailed::LinkLost);
            }
            return;
        }
        let Some(w) = self.net.walks.remove(&registry) else {
            return;
        };
        let started = w.started;
        crate::log_debug!(
            "network index: {} LIST pages, {} hosts, walked in {} ms for {} requests",
            w.pages,
            w.index.host_count(),
            cx.now().saturating_duration_since(started).as_millis(),
            w.waiters.len()
        );
        let (idx, waiters, exact) = w.finish();
        let idx = if exact {
            self.net.store(registry, started, idx)
        } else {
            Rc::new(idx)
        };
        for op in waiters {
            let out = match self.take_op(op) {
                Some(OpKind::Network(n)) => network_page(&idx, &n).into(),
                Some(OpKind::Publish(p)) if p.stage == PublishStage::List => {
                    self.publish_checked(cx, op, p, Some(&idx))
                }
                Some(other) => Outcome::Later(other),
                None => continue,
            };
            self.settle(cx, op, out);
        }
    }

    /// `user`'s registry connection closed or the session ended: a walk it
    /// carried goes on over a waiter's own connection, if one is up.
    pub(crate) fn walk_driver_gone(
        &mut self,
        cx: &mut Ctx,
        registry: std::net::SocketAddr,
        user: &str,
    ) {
        let ours = self
            .net
            .walks
            .get(&registry)
            .is_some_and(|w| w.driver == user);
        if ours {
            let waiters = self.net.walks.remove(&registry).map(|w| w.waiters);
            self.walk_failed(cx, waiters.unwrap_or_default(), WalkFailed::LinkLost);
        }
    }

    fn walk_failed(&mut self, cx: &mut Ctx, waiters: Vec<OpId>, why: WalkFailed) {
        for op in waiters {
            let Some(kind) = self.take_op(op) else {
                continue;
            };
            let user = match &kind {
                OpKind::Network(n) => n.user.clone(),
                OpKind::Publish(p) if p.stage == PublishStage::List => p.user.clone(),
                _ => {
                    self.resume_op(op, kind);
                    continue;
                }
            };
            let out = match (&why, kind) {
                (WalkFailed::Unusable(msg), OpKind::Network(_)) => Reply::error(502, msg).into(),
                (WalkFailed::Unusable(msg), OpKind::Publish(p)) => {
                    crate::log_warn!("{user}: duplicate check by name only: {msg}");
                    self.publish_checked(cx, op, p, None)
                }
                (WalkFailed::LinkLost, kind) => {
                    if !self.session_up(&user) {
                        self.resume_op(op, kind);
                        if self.users.get(&user).is_some_and(|u| u.session.is_some()) {
                            self.op_link_lost(cx, op);
                        } else {
                            let msg = "The session ended while this request waited; POST /api/client/init again";
                            self.finish(cx, op, Reply::error(409, msg));
                        }
                        continue;
                    }
                    // Someone else's connection dropped: walk again over ours.
                    match self.index_or_walk(cx, op, &user) {
                        Ok(None) => Outcome::Later(kind),
                        Ok(Some(idx)) => match kind {
                            OpKind::Network(n) => network_page(&idx, &n).into(),
                            OpKind::Publish(p) => self.publish_checked(cx, op, p, Some(&idx)),
                            other => Outcome::Later(other),
                        },
                        Err(r) => r.into(),
                    }
                }
                (_, other) => Outcome::Later(other),
            };
            self.settle(cx, op, out);
        }
    }

    /// This node changed what `user` publishes (one file): keep the shared
    /// index in step, so nobody here sees the old state for its lifetime.
    pub(crate) fn net_sync_file(&mut self, user: &str, name: &str) {
        let Some(u) = self.users.get(user) else {
            return;
        };
        let Some(registry) = u.session.as_ref().map(|s| s.registry) else {
            return;
        };
        let file = u
            .catalog
            .published_files()
            .find(|f| f.name == name)
            .map(net_file);
        let change = OwnChange::File {
            host: user.to_owned(),
            name: name.to_owned(),
            file,
        };
        self.net.own_change(registry, change);
    }

    /// All of `user`'s published files (REGISTER sent the whole catalog).
    pub(crate) fn net_sync_own(&mut self, user: &str) {
        let Some(u) = self.users.get(user) else {
            return;
        };
        let Some(registry) = u.session.as_ref().map(|s| s.registry) else {
            return;
        };
        let files = u.catalog.published_files().map(net_file).collect();
        let change = OwnChange::Host {
            host: user.to_owned(),
            files,
        };
        self.net.own_change(registry, change);
    }
}

fn net_file(f: &crate::node::catalog::TrackedFile) -> NetFile {
    NetFile {
        name: f.name.clone(),
        size: f.size,
        modified: f.modified,
        sha256: f.sha256.clone(),
    }
}

fn network_page(idx: &Index, n: &NetworkOp) -> Reply {
    let (files, total) = idx.page(&n.q, n.offset, n.limit);
    let end = n.offset.saturating_add(files.len());
    let next = (end < total).then_some(end);
    Reply::ok(json!({"success": true, "files": files, "total": total, "next_offset": next}))
}
