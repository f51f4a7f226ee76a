//! The running side of a fetch: connecting to hosts, asking them for
//! pieces, reading their answers (`link.rs`), handing pieces to workers
//! and acting on the workers' results. Phase changes go through
//! `Fetches::enter` (`mod.rs`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reactor::{CloseReason, ConnId, Ctx};

use super::job::{Job, Next, Outcome, Phase, Transfer};
use super::link::{Event, Expect, Link};
use super::record::HostOffer;
use super::work::{self, Done, What};
use super::{peers, progress, Fetches, Lookup, TimerKind};
use super::{CONNECT_TIMEOUT, IDLE_TIMEOUT, RETRY_BACKOFF};
use crate::node::catalog::pieces;
use crate::proto::peer::{self as wire, Request, DIGEST_LEN};

/// Hosts one fetch reads from at once.
const MAX_LINKS: usize = 8;
/// Piece buffers one fetch may hold (asked and being written).
const FETCH_BUFS: usize = 16;

impl Fetches {
    pub fn on_connect(&mut self, cx: &mut Ctx, conn: ConnId) {
        let Some(fid) = self.conns.get(conn).cloned() else {
            return;
        };
        self.with(&fid, |f, job| {
            let listing = matches!(job.phase, Phase::Pieces(_));
            let seed = job.rec.root.is_none();
            let name = job.rec.file_name.clone();
            let Some(t) = job.phase.transfer_mut() else {
                return;
            };
            let lister = t.lister.clone();
            let count = t.sched.count();
            let Some(link) = t.links.iter_mut().find(|l| l.conn == conn) else {
                return;
            };
            if let Some((timer, seq)) = link.connecting.take() {
                cx.cancel_timer(timer);
                f.timers.remove(&seq);
            }
            let host = link.host.clone();
            if let Some(h) = job.rec.hosts.iter().find(|h| h.hostname == host) {
                peers::activate(&mut job.rec.peers, &h.hostname, &h.ip, h.port);
            }
            // A host without a root shows its size and hash first; should
            // they be another version, the connection is dropped before
            // any payload is used.
            if seed {
                send(cx, conn, &Request::Info { name: name.clone() });
                link.push(Expect::Info);
            }
            if listing && lister.as_deref() == Some(host.as_str()) {
                send(cx, conn, &Request::Pieces { name });
                link.push(Expect::Pieces { count });
            }
            f.fill(cx, job);
        });
        self.flush(cx);
    }

    pub fn on_input(&mut self, cx: &mut Ctx, conn: ConnId) {
        let Some(fid) = self.conns.get(conn).cloned() else {
            return;
        };
        self.with(&fid, |f, job| {
            let now = cx.now();
            let Some(t) = job.phase.transfer_mut() else {
                return;
            };
            let Some(link) = t.links.iter_mut().find(|l| l.conn == conn) else {
                return;
            };
            let fed = link.feed(cx.input(conn));
            cx.consume(conn, fed.used);
            link.sample(now);
            let host = link.host.clone();
            peers::add_bytes(&mut job.rec.peers, &host, fed.body);
            if fed.body > 0 && job.rec.peer.is_none() {
                // `peer`: the host of the latest verified piece, or the
                // first to send bytes before one is.
                job.rec.peer = Some(host.clone());
            }
            let got = job.received();
            if job
                .samples
                .back()
                .is_none_or(|(t, _)| now.duration_since(*t).as_millis() >= 100)
            {
                job.samples.push_back((now, got));
                while job.samples.len() > 64 {
                    job.samples.pop_front();
                }
            }
            for ev in fed.events {
                if !f.on_event(cx, job, &host, ev) {
                    break;
                }
            }
            if job.phase.moving() {
                f.fill(cx, job);
            }
        });
        self.flush(cx);
    }

    /// One answer from `host`; false: stop reading its connection.
    fn on_event(&mut self, cx: &mut Ctx, job: &mut Job, host: &str, ev: Event) -> bool {
        match ev {
            Event::Info(Some((size, sha))) => {
                let msg = if size != job.rec.total_size {
                    Some(format!(
                        "{host} has a different version of the file ({size} bytes, not {})",
                        job.rec.total_size
                    ))
                } else {
                    match &job.rec.sha256 {
                        Some(want) if !want.eq_ignore_ascii_case(&sha) => Some(format!(
                            "{host} has a different version of the file (its SHA-256 differs)"
                        )),
                        Some(_) => None,
                        None => {
                            job.rec.sha256 = Some(sha);
                            None
                        }
                    }
                };
                match msg {
                    Some(m) => {
                        self.link_failed(cx, job, host, m, None);
                        false
                    }
                    None => true,
                }
            }
            Event::Info(None) => true,
            Event::List(list) => {
                let count = job.phase.transfer().map_or(0, |t| t.sched.count());
                let good = job.rec.root.as_deref() == Some(pieces::root_of(&list).as_str())
                    && list.len() as u64 == count * DIGEST_LEN as u64;
                if !good {
                    let why = "sent a piece list that does not match the root it published";
                    self.link_failed(cx, job, host, format!("{host} {why}"), Some(why));
                    return false;
                }
                if let (Some(t), Some(root)) = (job.phase.transfer_mut(), job.rec.root.clone()) {
                    let list = Arc::new(list);
                    t.digests = Some(list.clone());
                    t.lister = None;
                    let dir = self.data_dir.clone();
                    let _ = self.work.submit(move || {
                        work::store_list(&dir, &root, &list);
                        Done {
                            id: String::new(),
                            gen: 0,
                            what: What::Quiet,
                        }
                    });
                }
                self.enter(cx, job, Next::Downloading, None);
                true
            }
            Event::Piece {
                piece,
                buf,
                discard,
            } => {
                let Some(t) = job.phase.transfer_mut() else {
                    self.bufs.give(buf);
                    return true;
                };
                let digest: Option<Vec<u8>> = t.digests.as_ref().and_then(|d| {
                    let at = usize::try_from(piece).ok()? * DIGEST_LEN;
                    d.get(at..at + DIGEST_LEN).map(<[u8]>::to_vec)
                });
                if discard || t.sched.have(piece) {
                    t.sched.release(piece);
                    // The copy that lost the endgame is still checked: a
                    // host sending bad bytes is dropped even when they
                    // were not needed.
                    let Some(digest) = digest else {
                        self.bufs.give(buf);
                        return true;
                    };
                    let (id, gen, host) = (job.rec.fetch_id.clone(), job.gen, host.to_owned());
                    let sent = self.work.submit(move || {
                        let ok = work::check(&buf, &digest);
                        Done {
                            id,
                            gen,
                            what: What::Checked {
                                piece,
                                host,
                                buf,
                                ok,
                            },
                        }
                    });
                    if sent.is_err() {
                        self.bufs.give(Vec::new());
                    }
                    return true;
                }
                t.sched.handed(piece);
                let (file, offset) = (t.file.clone(), t.sched.offset(piece));
                let (id, gen, host) = (job.rec.fetch_id.clone(), job.gen, host.to_owned());
                t.writing += 1;
                let sent = self.work.submit(move || {
                    let result = work::piece(&file, offset, &buf, digest.as_deref());
                    Done {
                        id,
                        gen,
                        what: What::Piece {
                            piece,
                            host,
                            buf,
                            result,
                        },
                    }
                });
                if sent.is_err() {
                    // The queue holds more than every buffer there is: not reached.
                    t.writing -= 1;
                    t.sched.release(piece);
                    self.bufs.give(Vec::new());
                }
                true
            }
            Event::Fail(msg) => {
                self.link_failed(cx, job, host, msg, None);
                false
            }
        }
    }

    pub fn on_close(&mut self, cx: &mut Ctx, conn: ConnId, why: CloseReason) {
        let Some(fid) = self.conns.remove(conn) else {
            return;
        };
        self.with(&fid, |f, job| {
            let Some(link) = job
                .phase
                .transfer()
                .and_then(|t| t.links.iter().find(|l| l.conn == conn))
            else {
                return;
            };
            let (host, addr) = (link.host.clone(), link.addr.clone());
            let connecting = link.connecting.is_some();
            let msg = match why {
                // Stopping: the record stays as it is and resumes after a restart.
                CloseReason::Shutdown | CloseReason::Local => {
                    return f.drop_link(cx, job, &host);
                }
                CloseReason::ConnectFailed(e) => format!(
                    "Could not connect to {host} at {addr}: {}",
                    crate::util::without_errno(&e)
                ),
                CloseReason::Timeout if connecting => {
                    format!("Could not connect to {host} at {addr} in time")
                }
                CloseReason::Timeout => {
                    format!("{host} sent nothing for {} s", IDLE_TIMEOUT.as_secs())
                }
                CloseReason::PeerClosed => format!("{host} closed the connection"),
                // A reset is the peer closing too, just abruptly.
                CloseReason::Error(e) if e.contains("reset by peer") => {
                    format!("{host} closed the connection")
                }
                CloseReason::Error(e) => format!(
                    "The connection to {host} failed ({})",
                    crate::util::without_errno(&e)
                ),
            };
            f.link_failed(cx, job, &host, msg, None);
        });
        self.flush(cx);
    }

    pub(super) fn connect_timeout(&mut self, cx: &mut Ctx, job: &mut Job, conn: ConnId) {
        let Some(link) = job.phase.transfer().and_then(|t| {
            t.links
                .iter()
                .find(|l| l.conn == conn && l.connecting.is_some())
        }) else {
            return;
        };
        let (host, addr) = (link.host.clone(), link.addr.clone());
        let msg = format!(
            "Could not connect to {host} at {addr} within {} s",
            CONNECT_TIMEOUT.as_secs()
        );
        self.link_failed(cx, job, &host, msg, None);
    }

    // ----- asking hosts -----

    /// Connects the hosts the phase wants, asks connected hosts for pieces
    /// up to their depth and the buffer caps, and notices the end (every
    /// piece verified and hashed) or that no host is left.
    pub(super) fn fill(&mut self, cx: &mut Ctx, job: &mut Job) {
        let now = cx.now();
        let listing = matches!(job.phase, Phase::Pieces(_));
        let root_mode = job.rec.root.is_some();
        let fid = job.rec.fetch_id.clone();
        let Some(t) = job.phase.transfer_mut() else {
            return;
        };
        if !listing
            && t.sched.complete()
            && t.writing == 0
            && t.hashed == t.sched.count()
            && t.sha.is_some()
        {
            return self.enter(cx, job, Next::Finishing, None);
        }
        // Which hosts to have connections to.
        let usable: Vec<HostOffer> = job
            .rec
            .hosts
            .iter()
            .filter(|h| usable(h, &job.rec, t))
            .cloned()
            .collect();
        if listing && t.lister.is_none() {
            let root = job.rec.root.clone();
            match usable.iter().find(|h| h.root == root) {
                Some(h) => {
                    t.lister = Some(h.hostname.clone());
                    let name = job.rec.file_name.clone();
                    let count = t.sched.count();
                    if let Some(l) = t.link(&h.hostname).filter(|l| l.connecting.is_none()) {
                        send(cx, l.conn, &Request::Pieces { name });
                        l.push(Expect::Pieces { count });
                    }
                }
                None => {
                    // No host can give the list: one host at a time with
                    // the whole-file check, as for hosts without a root.
                    crate::log_info!(
                        "fetch {fid}: no host gave a piece list; whole-file check only"
                    );
                    job.rec.root = None;
                    return self.enter(cx, job, Next::Downloading, None);
                }
            }
        }
        let want = if root_mode { MAX_LINKS } else { 1 };
        for h in &usable {
            let Some(t) = job.phase.transfer_mut() else {
                return;
            };
            if t.links.len() >= want {
                break;
            }
            if listing && t.lister.as_deref() != Some(h.hostname.as_str()) && t.links.is_empty() {
                // The list comes first; other hosts join once it is verified.
                continue;
            }
            if t.link(&h.hostname).is_some() {
                continue;
            }
            self.connect(cx, job, h);
        }
        let Some(t) = job.phase.transfer_mut() else {
            return;
        };
        if !listing {
            // Hosts are asked in the registry's order, the one the user
            // named first (`hostname`).
            let hosts = &job.rec.hosts;
            let rank = |l: &Link| hosts.iter().position(|h| h.hostname == l.host);
            t.links.sort_by_key(|l| rank(l).unwrap_or(usize::MAX));
            self.ask_pieces(cx, &job.rec.file_name, t, root_mode, now);
        }
        let Some(t) = job.phase.transfer_mut() else {
            return;
        };
        if t.links.is_empty() && t.writing == 0 && !t.backoff && !t.sched.complete() {
            self.out_of_hosts(cx, job);
        }
    }

    fn ask_pieces(
        &mut self,
        cx: &mut Ctx,
        name: &str,
        t: &mut Transfer,
        endgame: bool,
        now: std::time::Instant,
    ) {
        let mut held = t.buffers();
        for i in 0..t.links.len() {
            let l = &t.links[i];
            if l.connecting.is_some() {
                continue;
            }
            let depth = l.depth(now);
            while t.links[i].ranges() < depth && held < FETCH_BUFS {
                let mine = t.links[i].pieces();
                let Some(piece) = t.sched.pick(&mine, endgame.then_some(now)) else {
                    return self.endgame_later(cx, t, endgame, now);
                };
                let len = t.sched.len(piece);
                let Some(buf) = self.bufs.take(len) else {
                    t.sched.release(piece);
                    return;
                };
                let req = Request::Range {
                    offset: t.sched.offset(piece),
                    length: len,
                    name: name.to_owned(),
                };
                send(cx, t.links[i].conn, &req);
                t.links[i].push(Expect::Range {
                    piece,
                    len,
                    buf,
                    discard: false,
                });
                held += 1;
            }
        }
    }

    /// Nothing to ask now: look again when a piece becomes eligible for
    /// the endgame (nothing else may wake the fetch if its hosts stall).
    fn endgame_later(
        &mut self,
        cx: &mut Ctx,
        t: &mut Transfer,
        endgame: bool,
        now: std::time::Instant,
    ) {
        if !endgame || t.endgame_timer {
            return;
        }
        let Some(fid) = t
            .links
            .first()
            .and_then(|l| self.conns.get(l.conn))
            .cloned()
        else {
            return;
        };
        if let Some(wait) = t.sched.endgame_wait(now) {
            t.endgame_timer = true;
            let wait = wait.max(std::time::Duration::from_millis(10));
            self.arm(cx, &fid, TimerKind::Endgame, wait);
        }
    }

    fn connect(&mut self, cx: &mut Ctx, job: &mut Job, h: &HostOffer) {
        let fid = job.rec.fetch_id.clone();
        let addr = match h.ip.trim().parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, h.port),
            Err(_) => {
                job.last_error = Some(format!("{} has no usable address", h.hostname));
                if let Some(t) = job.phase.transfer_mut() {
                    t.tried.insert(h.hostname.clone());
                }
                return;
            }
        };
        match cx.connect(addr, self.svc, Self::conn_options()) {
            Ok(conn) => {
                self.conns.insert(conn, fid.clone());
                let timer = self.arm(cx, &fid, TimerKind::Connect(conn), CONNECT_TIMEOUT);
                if let Some(t) = job.phase.transfer_mut() {
                    let link = Link::new(
                        conn,
                        h.hostname.clone(),
                        format!("{}:{}", h.ip, h.port),
                        Some(timer),
                    );
                    t.links.push(link);
                }
            }
            Err(e) => {
                job.last_error = Some(format!(
                    "Could not connect to {} at {addr}: {}",
                    h.hostname,
                    crate::util::without_errno(&e.to_string())
                ));
                if let Some(t) = job.phase.transfer_mut() {
                    t.tried.insert(h.hostname.clone());
                }
            }
        }
    }

    /// Closes `host`'s connection; its asked pieces may be asked of others.
    pub(super) fn drop_link(&mut self, cx: &mut Ctx, job: &mut Job, host: &str) {
        let Some(t) = job.phase.transfer_mut() else {
            return;
        };
        let Some(i) = t.links.iter().position(|l| l.host == host) else {
            return;
        };
        let mut link = t.links.remove(i);
        self.release_link(cx, t, &mut link);
        peers::stop(&mut job.rec.peers, host);
    }

    fn release_link(&mut self, cx: &mut Ctx, t: &mut Transfer, link: &mut Link) {
        if self.conns.remove(link.conn).is_some() {
            cx.close(link.conn);
        }
        if let Some((timer, seq)) = link.connecting.take() {
            cx.cancel_timer(timer);
            self.timers.remove(&seq);
        }
        for (piece, buf) in link.take_asked() {
            t.sched.release(piece);
            self.bufs.give(buf);
        }
        if t.lister.as_deref() == Some(link.host.as_str()) {
            t.lister = None;
        }
    }

    /// Every connection of the transfer closes (pause, finish, the end).
    pub(super) fn close_links(&mut self, cx: &mut Ctx, job: &mut Job, t: &mut Transfer) {
        for mut link in std::mem::take(&mut t.links) {
            self.release_link(cx, t, &mut link);
        }
        t.lister = None;
        peers::stop_all(&mut job.rec.peers);
    }

    /// `host` failed: its connection goes, the fetch goes on with the
    /// others. `drop`: its bytes failed a check; it is never asked again.
    pub(super) fn link_failed(
        &mut self,
        cx: &mut Ctx,
        job: &mut Job,
        host: &str,
        msg: String,
        drop: Option<&str>,
    ) {
        crate::log_info!("fetch {}: {msg}", job.rec.fetch_id);
        let sent = job
            .phase
            .transfer()
            .and_then(|t| t.links.iter().find(|l| l.host == host))
            .is_some_and(|l| l.bytes > 0);
        self.drop_link(cx, job, host);
        if let Some(t) = job.phase.transfer_mut() {
            t.tried.insert(host.to_owned());
        }
        if let Some(why) = drop {
            let (ip, port) = job
                .rec
                .hosts
                .iter()
                .find(|h| h.hostname == host)
                .map(|h| (h.ip.clone(), h.port))
                .unwrap_or_default();
            peers::drop_host(&mut job.rec.peers, host, &ip, port, why);
            self.want(super::SaveWant::Soon);
        }
        if sent {
            job.interrupted = Some(msg.clone());
        }
        job.last_error = Some(msg);
        if job.phase.moving() {
            self.fill(cx, job);
        }
    }

    /// No connection and no host left to try: a second pass after a pause,
    /// then a registry lookup, then the fetch fails.
    fn out_of_hosts(&mut self, cx: &mut Ctx, job: &mut Job) {
        let fid = job.rec.fetch_id.clone();
        let any_left = job
            .rec
            .hosts
            .iter()
            .any(|h| !peers::is_dropped(&job.rec.peers, &h.hostname));
        let Some(t) = job.phase.transfer_mut() else {
            return;
        };
        if t.round == 0 && any_left {
            t.round = 1;
            t.tried.clear();
            t.backoff = true;
            self.arm(cx, &fid, TimerKind::Backoff, RETRY_BACKOFF);
            return;
        }
        if !job.looked_up {
            return self.enter(cx, job, Next::Resolving, None);
        }
        self.give_up(cx, job);
    }

    pub(super) fn give_up(&mut self, cx: &mut Ctx, job: &mut Job) {
        let msg = match (peers::dropped_summary(&job.rec.peers), &job.last_error) {
            (Some(d), None) => format!("No host could provide a verified copy: {d}"),
            (Some(d), Some(_)) => format!("{} ({d})", progress::final_error(job)),
            (None, _) => progress::final_error(job),
        };
        self.enter(cx, job, Next::Done(Outcome::Failed(msg)), None);
    }

    /// Asks the registry for the hosts offering this content (sent by the node).
    pub(super) fn ask_hosts(&mut self, job: &mut Job) {
        if job.lookup.is_some() {
            return;
        }
        let seq = self.next_key & crate::node::Timer::SEQ_MASK;
        self.next_key += 1;
        self.lookups.push(Lookup {
            seq,
            user: job.rec.user.clone(),
            fname: job.rec.file_name.clone(),
            sha256: job.rec.sha256.clone(),
        });
        self.lookup_of.insert(seq, job.rec.fetch_id.clone());
        job.lookup = Some(seq);
    }

    /// The registry's hosts: new ones (or known ones at a new address, a
    /// node restarted on another port) join the fetch.
    pub(super) fn merge_hosts(
        &mut self,
        cx: &mut Ctx,
        job: &mut Job,
        seq: u64,
        offers: Vec<HostOffer>,
    ) {
        if job.lookup != Some(seq) {
            return;
        }
        job.lookup = None;
        self.lookups.retain(|l| l.seq != seq);
        let mut new = false;
        for o in offers {
            let same = o.size == job.rec.total_size
                && match (&o.sha256, &job.rec.sha256) {
                    (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                    (None, _) => false,
                    (Some(_), None) => true,
                };
            if !same || o.hostname == job.rec.user || peers::is_dropped(&job.rec.peers, &o.hostname)
            {
                continue;
            }
            match job.rec.hosts.iter_mut().find(|h| h.hostname == o.hostname) {
                Some(h) if h.ip == o.ip && h.port == o.port => {}
                Some(h) => {
                    *h = o;
                    new = true;
                }
                None => {
                    job.rec.hosts.push(o);
                    new = true;
                }
            }
        }
        let resolving = matches!(job.phase, Phase::Resolving(_));
        if new {
            self.want(super::SaveWant::Soon);
            if let Some(t) = job.phase.transfer_mut() {
                t.tried.clear();
                t.round = 0;
            }
        }
        if resolving {
            job.looked_up = true;
            if !new {
                return self.give_up(cx, job);
            }
            let listing =
                job.rec.root.is_some() && job.phase.transfer().is_some_and(|t| t.digests.is_none());
            let next = if listing {
                Next::Pieces
            } else {
                Next::Downloading
            };
            return self.enter(cx, job, next, None);
        }
        if job.phase.moving() {
            self.fill(cx, job);
        }
    }
}

/// Whether `h` may be asked in this pass: not dropped or failed, the same
/// content, and (with a root) the same root or none (its pieces are
/// checked against the list all the same).
fn usable(h: &HostOffer, r: &super::record::Record, t: &Transfer) -> bool {
    if peers::is_dropped(&r.peers, &h.hostname) || t.tried.contains(&h.hostname) {
        return false;
    }
    let same = h.size == r.total_size
        && match (&h.sha256, &r.sha256) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            _ => true,
        };
    let root_ok = match (&r.root, &h.root) {
        (Some(want), Some(has)) => want.eq_ignore_ascii_case(has),
        _ => true,
    };
    same && root_ok
}

fn send(cx: &mut Ctx, conn: ConnId, req: &Request) {
    // Names were checked when the fetch started; a line that cannot be
    // encoded is not sent and the host's idle timeout ends it.
    if let Some(line) = wire::encode_request(req) {
        cx.send_vec(conn, line);
    }
}
