//! The reactor through real loopback sockets: half-close with queued answers,
//! output caps and the pause they cause, the per-turn write budget, slot
//! reuse with stale ids, and timers.

mod support;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use reactor::{CloseReason, ConnOptions};
use support::*;

#[test]
fn every_request_sent_before_a_half_close_is_answered_then_the_connection_closes() {
    let r = Running::start(ConnOptions::default(), vec![]);
    let mut c = r.connect();
    let mut batch = String::new();
    for i in 0..500 {
        batch.push_str(&format!("ECHO {i}\n"));
    }
    // One big answer too, so output is still queued when the FIN arrives.
    batch.push_str("BIG 3000000\n");
    c.write_all(batch.as_bytes()).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let want: String = (0..500).map(|i| format!("{i}\n")).collect();
    let mut got = vec![0u8; want.len()];
    c.read_exact(&mut got).unwrap();
    assert_eq!(String::from_utf8(got).unwrap(), want);
    read_pattern(&mut c, 3_000_000);
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "nothing after the answers, then EOF");
    r.wait_until("the loop reports the peer's close", |s| {
        s.closed
            .iter()
            .any(|(_, why)| *why == CloseReason::PeerClosed)
    });
}

#[test]
fn requests_left_waiting_behind_the_output_cap_are_answered_after_a_half_close() {
    let r = Running::start(ConnOptions::default(), vec![]);
    let mut c = r.connect();
    // The second answer takes the output over the service's cap, so the
    // third request is still unread input when the FIN arrives.
    c.write_all(b"BIG 200000\nBIG 200000\nBIG 200000\nECHO last\n")
        .unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    read_pattern(&mut c, 200_000);
    read_pattern(&mut c, 200_000);
    read_pattern(&mut c, 200_000);
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"last\n");
}

#[test]
fn a_client_that_does_not_read_pauses_reading_and_output_stays_capped() {
    let opts = ConnOptions {
        max_output: 256 * 1024,
        ..ConnOptions::default()
    };
    let r = Running::start(opts, vec![]);
    let mut c = r.connect();
    // 400 requests for 64 KiB each: 25 MiB of answers the client won't read yet.
    let asks = "BIG 65536\n".repeat(400);
    let writer = {
        let mut w = c.try_clone().unwrap();
        std::thread::spawn(move || w.write_all(asks.as_bytes()))
    };
    // Reading pauses once 256 KiB of answers wait: far fewer than 400 are handled.
    r.wait_until("some requests are handled", |s| s.bigs > 0);
    // An observation window, not a synchronisation: nothing more may be
    // handled during it while nobody reads.
    std::thread::sleep(Duration::from_millis(300));
    let (handled, max) = {
        let s = r.seen.lock().unwrap();
        (s.bigs, s.max_output)
    };
    assert!(handled < 400, "all {handled} handled while nobody read");
    assert!(
        max <= 256 * 1024 + 64 * 1024,
        "owned output grew to {max} bytes past its cap"
    );
    // Reading resumes as the client drains; every byte arrives in order.
    for _ in 0..400 {
        read_pattern(&mut c, 65536);
    }
    writer.join().unwrap().unwrap();
    assert_eq!(r.seen.lock().unwrap().bigs, 400);
}

#[test]
fn a_small_answer_is_not_held_behind_a_large_one_on_another_connection() {
    let opts = ConnOptions {
        write_budget: 64 * 1024,
        max_output: 128 * 1024 * 1024,
        ..ConnOptions::default()
    };
    let r = Running::start(opts, vec![]);
    let mut big = r.connect();
    big.write_all(b"BIG 67108864\n").unwrap();
    // Read the first bytes so the transfer is under way.
    read_pattern(&mut big, 1024);
    let mut small = r.connect();
    let t = Instant::now();
    assert_eq!(ask(&mut small, "ECHO hi"), "hi");
    let small_took = t.elapsed();
    // The big transfer is still far from done: the budget made it share the loop.
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        let mut left = 67_108_864 - 1024;
        while left > 0 {
            let k = big.read(&mut buf).unwrap();
            assert!(k > 0);
            left -= k;
        }
    });
    reader.join().unwrap();
    assert!(
        small_took < Duration::from_secs(2),
        "the echo waited {small_took:?} behind 64 MiB"
    );
}

#[test]
fn a_stale_id_does_not_reach_the_connection_that_reuses_its_slot() {
    let r = Running::start(ConnOptions::default(), vec![]);
    let mut first = r.connect();
    assert_eq!(ask(&mut first, "ECHO one"), "one");
    drop(first);
    r.wait_until("the first connection is closed", |s| s.closed.len() == 1);
    let mut second = r.connect();
    r.wait_until("the second is accepted", |s| s.accepted.len() == 2);
    let (a, b) = {
        let s = r.seen.lock().unwrap();
        (s.accepted[0], s.accepted[1])
    };
    assert_eq!(a.index(), b.index(), "the slab slot is reused");
    assert_ne!(a.generation(), b.generation());
    assert_eq!(ask(&mut second, "STALE"), "first open: false");
    assert_eq!(ask(&mut second, "ECHO still mine"), "still mine");
}

#[test]
fn timers_fire_in_deadline_order_not_early_and_cancelled_ones_never() {
    let arm = vec![
        (Duration::from_millis(90), 3, false),
        (Duration::from_millis(30), 1, false),
        (Duration::from_millis(45), 9, true),
        (Duration::from_millis(60), 2, false),
    ];
    let r = Running::start(ConnOptions::default(), arm);
    let t0 = Instant::now();
    let _c = r.connect(); // the first accept arms them
    r.wait_until("three timers fired", |s| s.timers.len() >= 3);
    // An observation window: a cancelled timer gets every chance to fire wrongly.
    std::thread::sleep(Duration::from_millis(100));
    let s = r.seen.lock().unwrap();
    let keys: Vec<u64> = s.timers.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, vec![1, 2, 3]);
    let at = |k: u64| s.timers.iter().find(|(x, _)| *x == k).unwrap().1 - t0;
    assert!(at(1) >= Duration::from_millis(30), "{:?}", at(1));
    assert!(at(3) >= Duration::from_millis(90), "{:?}", at(3));
}

#[test]
fn an_idle_connection_is_closed_after_its_idle_timeout() {
    let opts = ConnOptions {
        idle_timeout: Some(Duration::from_millis(300)),
        ..ConnOptions::default()
    };
    let r = Running::start(opts, vec![]);
    let mut c = r.connect();
    assert_eq!(ask(&mut c, "ECHO x"), "x");
    let t = Instant::now();
    let mut buf = [0u8; 1];
    assert_eq!(c.read(&mut buf).unwrap(), 0, "closed by the server");
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    r.wait_until("the close is reported as a timeout", |s| {
        s.closed.iter().any(|(_, why)| *why == CloseReason::Timeout)
    });
}

#[test]
fn a_line_finished_while_the_loop_was_busy_is_not_timed_out() {
    // The peer finished its line in time, but the loop was busy past the
    // partial timeout and had not read it: the sweep must not blame the peer.
    let opts = ConnOptions {
        partial_timeout: Some(Duration::from_millis(300)),
        ..ConnOptions::default()
    };
    let r = Running::start(opts, vec![]);
    let mut c = r.connect();
    c.write_all(b"ECHO fini").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let mut busy = r.connect();
    let mut slow: Vec<TcpStream> = (0..5).map(|_| r.connect()).collect();
    std::thread::sleep(Duration::from_millis(100));
    busy.write_all(b"SPIN 1200\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // While it spins: lines that use up the next turn's budget arrive
    // first, then the rest of `c`'s line, so `c` waits in the backlog
    // while the sweep runs.
    for s in slow.iter_mut() {
        s.write_all(b"SPIN 5\n").unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    c.write_all(b"shed\n").unwrap();
    assert_eq!(ask(&mut busy, "ECHO after"), "spun");
    assert_eq!(ask(&mut c, "ECHO again"), "finished");
}

#[test]
fn a_partial_line_left_idle_is_closed_after_the_partial_timeout() {
    let opts = ConnOptions {
        partial_timeout: Some(Duration::from_millis(300)),
        ..ConnOptions::default()
    };
    let r = Running::start(opts, vec![]);
    let mut c = r.connect();
    c.write_all(b"ECHO never fin").unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(c.read(&mut buf).unwrap(), 0, "closed by the server");
    r.wait_until("the close is reported as a timeout", |s| {
        s.closed.iter().any(|(_, why)| *why == CloseReason::Timeout)
    });
}
