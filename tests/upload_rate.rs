//! `--max-upload-rate`: one token bucket for all of a node's peer uploads.
//! Behaviour, not a benchmark: the bounds are generous, what is checked is
//! that one download is paced, that two share the rate rather than get it
//! each, and that without the flag nothing is paced.

mod harness;

use std::time::{Duration, Instant};

use harness::*;

const SIZE: usize = 6_000_000;

/// A node (with `extra` flags) whose user published a 6 MB file; returns
/// the node, the user and the file's name and bytes.
fn serving(
    coord: &Coordinator,
    extra: &[&str],
) -> (Node, User, String, Vec<u8>, tempfile::TempDir) {
    let node = Node::start_with(coord, extra, &[]);
    let user = node.user("alice");
    let dir = tempfile::tempdir().unwrap();
    let body = pattern(SIZE, 11);
    let path = dir.path().join("six megabytes.bin");
    std::fs::write(&path, &body).unwrap();
    let name = node.publish(&user, &path);
    (node, user, name, body, dir)
}

/// GETs `name` from `user`'s peer; returns the bytes and, per read, when it
/// arrived (since `t0`) and how much it carried.
fn download(user: &User, name: &str, t0: Instant) -> (Vec<u8>, Vec<(Duration, usize)>) {
    let mut c = PeerConn::connect(user.peer);
    c.send(format!("GET {name}\n").as_bytes());
    assert_eq!(c.line(), format!("LENGTH {SIZE}"));
    let mut got = Vec::with_capacity(SIZE);
    let mut reads = Vec::new();
    while got.len() < SIZE {
        let part = c.bytes((SIZE - got.len()).min(64 * 1024));
        assert!(!part.is_empty(), "closed after {} bytes", got.len());
        reads.push((t0.elapsed(), part.len()));
        got.extend_from_slice(&part);
    }
    (got, reads)
}

/// The most bytes that arrived within any `window`.
fn busiest(reads: &[(Duration, usize)], window: Duration) -> usize {
    let mut best = 0;
    let mut sum = 0;
    let mut lo = 0;
    for hi in 0..reads.len() {
        sum += reads[hi].1;
        while reads[hi].0 - reads[lo].0 > window {
            sum -= reads[lo].1;
            lo += 1;
        }
        best = best.max(sum);
    }
    best
}

#[test]
fn one_download_from_a_node_limited_to_2_mb_per_second_takes_about_three_seconds() {
    let coord = Coordinator::start();
    let (_node, user, name, body, _dir) = serving(&coord, &["--max-upload-rate", "2MB"]);
    let t0 = Instant::now();
    let (got, reads) = download(&user, &name, t0);
    let took = t0.elapsed();
    assert!(got == body, "the bytes arrive intact");
    // 6 MB at 2 MB/s is 3 s; a small burst may go out at once.
    assert!(took >= Duration::from_millis(2500), "6 MB in {took:?}");
    assert!(took < Duration::from_secs(30), "6 MB in {took:?}: stalled");
    let peak = busiest(&reads, Duration::from_secs(1));
    assert!(peak <= 3_000_000, "{peak} bytes within one second");
}

#[test]
fn two_downloads_share_the_limit_instead_of_getting_it_each() {
    let coord = Coordinator::start();
    let (_node, user, name, body, _dir) = serving(&coord, &["--max-upload-rate", "2MB"]);
    let t0 = Instant::now();
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| download(&user, &name, t0));
        let b = s.spawn(|| download(&user, &name, t0));
        (a.join().unwrap(), b.join().unwrap())
    });
    let took = t0.elapsed();
    assert!(a.0 == body && b.0 == body, "the bytes arrive intact");
    // 12 MB at 2 MB/s together is 6 s; had each connection 2 MB/s of its
    // own, both would be done in 3 s.
    assert!(took >= Duration::from_secs(5), "12 MB in {took:?}");
    let first_done = a.1.last().unwrap().0.min(b.1.last().unwrap().0);
    assert!(
        first_done >= Duration::from_millis(4500),
        "one download finished after {first_done:?}: not shared fairly"
    );
    let mut all: Vec<(Duration, usize)> = a.1.iter().chain(b.1.iter()).copied().collect();
    all.sort();
    let peak = busiest(&all, Duration::from_secs(1));
    assert!(
        peak <= 3_000_000,
        "{peak} bytes within one second, both together"
    );
    let rate = (2 * SIZE) as f64 / took.as_secs_f64();
    assert!(rate >= 1_000_000.0, "{rate:.0} B/s: far below the limit");
}

#[test]
fn without_the_flag_uploads_are_not_paced() {
    let coord = Coordinator::start();
    let (_node, user, name, body, _dir) = serving(&coord, &[]);
    let t0 = Instant::now();
    let (got, _) = download(&user, &name, t0);
    let took = t0.elapsed();
    assert!(got == body);
    // Loopback moves 6 MB in milliseconds; 2 s is far below any pacing.
    assert!(took < Duration::from_secs(2), "6 MB in {took:?}");
}
