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

/// The first IPv4 address of an interface that is up and not loopback.
fn lan_address() -> Option<IpAddr> {
    let mut found = None;
    // SAFETY: getifaddrs allocates a list we walk read-only and then free.
    unsafe {
        let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut list) != 0 {
            return None;
        }
        let mut cur = list;
        while !cur.is_null() {
            let ifa = &*cur;
            let up = ifa.ifa_flags & (libc::IFF_UP as u32) != 0;
            let lo = ifa.ifa_flags & (libc::IFF_LOOPBACK as u32) != 0;
            if up
                && !lo
                && !ifa.ifa_addr.is_null()
                && i32::from((*ifa.ifa_addr).sa_family) == libc::AF_INET
            {
                let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                found = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    sin.sin_addr.s_addr,
                ))));
                break;
            }
            cur = ifa.ifa_next;
        }
        libc::freeifaddrs(list);
    }
    found
}

pub fn run_up(cfg: Config) -> Result<(), String> {
    let mut reactor = new_reactor()?;
    let mut coord = Coordinator::start(reactor.ctx(), 0, &cfg)?;
    // The node talks to the coordinator in this very process, wherever its
    // listeners landed (port 0 included).
    let mut node_cfg = cfg.clone();
    node_cfg.coordinator = reachable(coord.registry_addr).to_string();
    node_cfg.coordinator_api = format!("http://{}", reachable(coord.api_addr));
    // The node reaches the coordinator over loopback, so the address it would
    // detect from that connection is 127.0.0.1, which peers on other machines
    // cannot use. Advertise this machine's first LAN address instead.
    if node_cfg.advertise_ip.is_none() {
        node_cfg.advertise_ip = lan_address();
        if let Some(ip) = node_cfg.advertise_ip {
            crate::log_info!("peers on other machines will be told to connect to {ip} (set --advertise-ip to change)");
        }
    }
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
