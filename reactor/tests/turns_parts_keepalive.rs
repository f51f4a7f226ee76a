//! Through real loopback sockets: the loop's turn-time histogram sees a
//! stall, a reply queued as shared pieces arrives whole and in order while
//! another connection's small answers are not held behind it, and TCP
//! keepalive is set on a connection as asked.

mod support;

use std::time::Instant;

use reactor::ConnOptions;
use support::*;

#[test]
fn a_stalled_turn_shows_in_the_loop_turn_histogram() {
    let r = Running::start(ConnOptions::default(), vec![]);
    let mut c = r.connect();
    let before: Vec<f64> = ask(&mut c, "TURNS")
        .split(' ')
        .map(|x| x.parse().unwrap())
        .collect();
    assert!(before[1] < 25.0, "no 25 ms turn yet: {before:?}");
    assert_eq!(ask(&mut c, "SPIN 30"), "spun");
    let after: Vec<f64> = ask(&mut c, "TURNS")
        .split(' ')
        .map(|x| x.parse().unwrap())
        .collect();
    assert!(after[0] > before[0], "turns are counted: {after:?}");
    assert!(after[1] >= 30.0, "the 30 ms turn is the max: {after:?}");
    assert!(after[3] >= 1.0, "and counted over 2 ms: {after:?}");
}

#[test]
fn shared_pieces_arrive_whole_and_a_small_answer_is_not_held_behind_them() {
    let opts = ConnOptions {
        write_budget: 64 * 1024,
        ..ConnOptions::default()
    };
    let r = Running::start(opts, vec![]);
    let mut big = r.connect();
    let mut small = r.connect();
    // 100,000 pieces, 10 MB: many turns at 64 KiB each.
    use std::io::Write;
    big.write_all(b"PARTS 100000\n").unwrap();
    let t = Instant::now();
    assert_eq!(ask(&mut small, "ECHO quick"), "quick");
    let quick = t.elapsed();
    read_pattern(&mut big, 10_000_000);
    let whole = t.elapsed();
    assert!(
        quick < whole,
        "the small answer ({quick:?}) came before the 10 MB reply finished ({whole:?})"
    );
    assert_eq!(
        ask(&mut big, "ECHO after"),
        "after",
        "the stream stays in step"
    );
}

#[test]
fn keepalive_is_set_on_the_socket_as_asked() {
    let r = Running::start(ConnOptions::default(), vec![]);
    let mut c = r.connect();
    assert_eq!(ask(&mut c, "KEEPALIVE 30 10 3"), "30 10 3");
    assert_eq!(ask(&mut c, "KEEPALIVE 2 1 4"), "2 1 4");
}

#[test]
fn keepalive_turned_on_takes_the_timings_the_listener_set() {
    let r = Running::start(ConnOptions::default(), vec![]);
    let mut c = r.connect();
    assert_eq!(ask(&mut c, "KEEPALIVE_ON"), "40 20 5");
}

#[test]
fn the_kernel_says_when_the_peer_was_last_heard() {
    let r = Running::start(ConnOptions::default(), vec![]);
    let mut c = r.connect();
    let ms: u128 = ask(&mut c, "HEARD").parse().unwrap();
    assert!(ms < 5_000, "the request itself was just heard: {ms} ms");
}

#[test]
fn a_burst_of_connections_is_accepted_in_steps_and_every_one_answered() {
    let r = Running::start(ConnOptions::default(), vec![]);
    use std::io::Write;
    // Far more than one accept step (64): the rest wait in the backlog,
    // which must not lose any (edge-triggered: no second event comes).
    let mut conns: Vec<_> = (0..300).map(|_| r.connect()).collect();
    for (i, c) in conns.iter_mut().enumerate() {
        c.write_all(format!("ECHO {i}\n").as_bytes()).unwrap();
    }
    for (i, c) in conns.iter_mut().enumerate() {
        assert_eq!(ask(c, "ECHO again"), format!("{i}"));
    }
    r.wait_until("all 300 accepted", |s| s.accepted.len() == 300);
}
