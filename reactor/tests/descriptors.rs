//! Running out of descriptors: the loop keeps serving the connections it has,
//! sheds what it cannot accept, and accepts again once descriptors are free.
//! Its own file, so the lowered limit is this test process's alone.

mod support;

use std::net::TcpStream;
use std::time::Duration;

use reactor::ConnOptions;
use support::*;

fn open_descriptors() -> u64 {
    std::fs::read_dir("/proc/self/fd").unwrap().count() as u64
}

fn set_soft_limit(n: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain calls on a struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = n.min(lim.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
}

#[test]
fn out_of_descriptors_the_loop_keeps_serving_and_recovers() {
    let r = Running::start(ConnOptions::default(), vec![]);
    let mut kept = r.connect();
    assert_eq!(ask(&mut kept, "ECHO before"), "before");
    // Room for 40 more descriptors in this process, clients and server alike.
    set_soft_limit(open_descriptors() + 40);
    let mut clients: Vec<TcpStream> = Vec::new();
    for _ in 0..35 {
        match TcpStream::connect(r.addr) {
            Ok(s) => clients.push(s),
            Err(_) => break,
        }
    }
    r.wait_until("the loop says it ran out of descriptors", |s| {
        s.logs
            .iter()
            .any(|l| l.to_lowercase().contains("descriptor"))
    });
    // The connection it already had is still served.
    assert_eq!(ask(&mut kept, "ECHO during"), "during");
    // Free descriptors: the loop accepts again (after its short pause).
    clients.clear();
    let mut late = None;
    for _ in 0..200 {
        if let Ok(mut s) = TcpStream::connect(r.addr) {
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            if ask(&mut s, "ECHO after") == "after" {
                late = Some(s);
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(late.is_some(), "a new connection is served after recovery");
}
