//! Liveness from the connection (`docs/registry-protocol.md`, "Liveness"): a
//! registered connection that stays open and silent is a live host, and a
//! host that vanishes without a FIN is marked offline once TCP keepalive
//! gives up. The vanishing host is a client in a network namespace joined to
//! this one by a veth pair whose link the test takes down: no FIN, no RST,
//! nothing reaches the coordinator (a stopped process would not do: its
//! kernel still answers keepalives). Needs root and `ip`; skipped otherwise.

mod harness;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::*;
use serde_json::json;

/// A network namespace with one end of a veth pair; removed on drop (the
/// pair goes with it).
struct Netns {
    name: String,
    host_if: String,
    ns_if: String,
    host_ip: String,
    ns_ip: String,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Netns {
    fn make() -> Option<Netns> {
        if !is_root() {
            return None;
        }
        let id = std::process::id() % 60_000;
        let n = Netns {
            name: format!("p2p13-{id}"),
            host_if: format!("v13h{id}"),
            ns_if: format!("v13n{id}"),
            // A /30 of 10.213.0.0/16 per test process.
            host_ip: format!("10.213.{}.{}", (id * 4) / 256 % 256, (id * 4) % 256 + 1),
            ns_ip: format!("10.213.{}.{}", (id * 4) / 256 % 256, (id * 4) % 256 + 2),
        };
        let ok = ip(&["netns", "add", &n.name])
            && ip(&[
                "link", "add", &n.host_if, "type", "veth", "peer", "name", &n.ns_if,
            ])
            && ip(&["link", "set", &n.ns_if, "netns", &n.name])
            && ip(&[
                "addr",
                "add",
                &format!("{}/30", n.host_ip),
                "dev",
                &n.host_if,
            ])
            && ip(&["link", "set", &n.host_if, "up"])
            && ip(&[
                "-n",
                &n.name,
                "addr",
                "add",
                &format!("{}/30", n.ns_ip),
                "dev",
                &n.ns_if,
            ])
            && ip(&["-n", &n.name, "link", "set", &n.ns_if, "up"])
            && ip(&["-n", &n.name, "link", "set", "lo", "up"]);
        if ok {
            Some(n)
        } else {
            drop(n);
            None
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        ip(&["link", "del", &self.host_if]);
        ip(&["netns", "del", &self.name]);
    }
}

/// A node stand-in inside the namespace: bash over /dev/tcp registers
/// `host` and then stays connected and silent (no PING at all).
fn silent_node(ns: &Netns, port: u16, host: &str) -> Child {
    let line =
        json!({"action":"REGISTER","data":{"hostname":host,"port":7000,"token":token(host)}})
            .to_string();
    let script = format!(
        "exec 3<>/dev/tcp/{}/{port} || exit 1; printf '%s\\n' '{line}' >&3; \
         read -r answer <&3; echo \"$answer\"; exec sleep 600",
        ns.host_ip
    );
    Command::new("ip")
        .args(["netns", "exec", &ns.name, "bash", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ip netns exec")
}

fn online(c: &Coordinator, host: &str) -> Option<bool> {
    let v = c.reg().req("DISCOVER", json!({"hostname": host}));
    v["online"].as_bool()
}

#[test]
fn a_host_that_vanishes_without_a_fin_is_marked_offline_by_keepalive() {
    let Some(ns) = Netns::make() else {
        eprintln!("skipped: needs root and ip netns");
        return;
    };
    // Keepalive 2 s idle, 1 s interval, 2 probes: a dead peer is found ~4 s
    // after its last packet (the default 30/10/3 makes that 60 s).
    let c = Coordinator::start_with(&["--host", "0.0.0.0"], &[("P2PSHARE_KEEPALIVE", "2,1,2")]);
    let mut node = silent_node(&ns, c.registry.port(), "vanisher");
    let mut out = node.stdout.take().expect("stdout");
    let mut answer = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(&mut out), &mut answer).unwrap();
    assert!(answer.contains("\"OK\""), "REGISTER answered {answer:?}");
    assert_eq!(online(&c, "vanisher"), Some(true));
    // Silent but alive: keepalive probes are answered by its kernel, so the
    // host stays online well past several keepalive rounds.
    let quiet_until = Instant::now() + Duration::from_secs(6);
    wait_until(
        "6 s of a silent, live host",
        Duration::from_secs(20),
        || {
            assert_eq!(
                online(&c, "vanisher"),
                Some(true),
                "a live host went offline"
            );
            (Instant::now() >= quiet_until).then_some(())
        },
    );
    // The link goes down: nothing more reaches us, not even a FIN.
    assert!(ip(&["-n", &ns.name, "link", "set", &ns.ns_if, "down"]));
    let gone = Instant::now();
    wait_until(
        "keepalive to mark the vanished host offline",
        Duration::from_secs(30),
        || (online(&c, "vanisher") == Some(false)).then_some(()),
    );
    let took = gone.elapsed();
    assert!(
        node.try_wait().ok().flatten().is_none(),
        "the node process is still running: no FIN was sent"
    );
    eprintln!("offline {took:?} after the link went down (keepalive 2 s + 2 × 1 s)");
    let _ = node.kill();
    let _ = node.wait();
}

#[test]
fn a_silent_connected_host_survives_the_inactivity_sweep() {
    // Swept after 1 s without a message, but its connection is open and its
    // kernel answers: heard, so seen (docs/registry-protocol.md). With
    // keepalive every second the kernel hears it well within the timeout.
    let c = Coordinator::start_with(
        &[],
        &[
            ("CLIENT_INACTIVE_TIMEOUT", "3"),
            ("CLIENT_CLEANUP_INTERVAL", "0.2"),
            ("P2PSHARE_KEEPALIVE", "1,1,3"),
        ],
    );
    let mut a = c.reg();
    a.register("silent");
    let mut q = c.reg();
    let until = Instant::now() + Duration::from_secs(8);
    wait_until(
        "8 s past the inactivity timeout",
        Duration::from_secs(30),
        || {
            let v = q.req("DISCOVER", json!({"hostname":"silent"}));
            assert_eq!(v["status"], "OK", "swept while connected: {v}");
            (Instant::now() >= until).then_some(())
        },
    );
    drop(a);
    // Closed: offline at once, and swept once its last message is old.
    wait_until(
        "the closed host to be swept",
        Duration::from_secs(15),
        || {
            let v = q.req("DISCOVER", json!({"hostname":"silent"}));
            (v["reason"] == "unknown host").then_some(())
        },
    );
}
