//! `p2pshare node` and `p2pshare up`: the node alone, or the coordinator and
//! a node sharing one reactor (the embedded default for one machine).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use reactor::Reactor;

use crate::config::Config;
use crate::coordinator::Coordinator;

/// A reactor that stops on SIGINT/SIGTERM and logs through our logger. Call
/// before any worker thread starts, so they inherit the blocked signals.
pub fn new_reactor() -> Result<Reactor, String> {
    let mut reactor = Reactor::new().map_err(|e| format!("cannot create the event loop: {e}"))?;
    let flag = reactor::signals::watch(reactor.ctx().waker())
        .map_err(|e| format!("cannot watch signals: {e}"))?;
    reactor.ctx().set_stop_flag(flag);
    reactor.ctx().set_logger(Box::new(|m| {
        crate::log::write(
            crate::log::Level::Warn,
            format_args!("{}", m.trim_start_matches("WARN  ")),
        )
    }));
    Ok(reactor)
}

pub fn run_node(cfg: Config) -> Result<(), String> {
    crate::node::run(cfg)
}

/// Loopback when a listener bound every interface, else its own address.
fn reachable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
    } else {
        addr
    }
}

pub fn run_up(cfg: Config) -> Result<(), String> {
    let mut reactor = new_reactor()?;
    let mut coord = Coordinator::start(reactor.ctx(), 0, &cfg)?;
    // The node talks to the coordinator in this very process, wherever its
    // listeners landed (port 0 included).
    let mut node_cfg = cfg.clone();
    node_cfg.coordinator = reachable(coord.registry_addr).to_string();
    node_cfg.coordinator_api = format!("http://{}", reachable(coord.api_addr));
    let mut node = crate::node::start(reactor.ctx(), 1, &node_cfg)?;
    println!(
        "p2pshare is up: open http://{}/ to share and fetch files, http://{}/ for the admin dashboard",
        reachable(node.api_addr()),
        reachable(coord.api_addr)
    );
    reactor
        .run(&mut [&mut coord, &mut node])
        .map_err(|e| format!("event loop failed: {e}"))?;
    crate::log_info!("stopped");
    Ok(())
}
