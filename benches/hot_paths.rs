//! Micro-benchmarks of the hot paths: registry line parse (and the full
//! dispatch through a registry), JWT sign and verify, HTTP head parse.
//! Each prints ns per operation as mean and hdrhistogram percentiles of
//! batches, so runs compare line by line. `cargo bench --bench hot_paths`.

use std::hint::black_box;
use std::time::Instant;

use hdrhistogram::Histogram;
use p2pshare::auth::jwt;
use p2pshare::coordinator::registry::Registry;
use p2pshare::proto::registry::{decode_request, FileMeta, Request};
use reactor::http::{parse_request as parse_http, Limits};

/// Runs `f` in batches of `batch` calls and records ns per call.
fn bench(name: &str, batch: u64, mut f: impl FnMut()) {
    let mut h = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).expect("histogram bounds");
    // Warm up.
    for _ in 0..batch {
        f();
    }
    let until = Instant::now() + std::time::Duration::from_millis(1500);
    let mut calls = 0u64;
    let t0 = Instant::now();
    while Instant::now() < until {
        let t = Instant::now();
        for _ in 0..batch {
            f();
        }
        let ns = t.elapsed().as_nanos() as u64 / batch;
        let _ = h.record(ns.max(1));
        calls += batch;
    }
    let mean = t0.elapsed().as_nanos() as f64 / calls as f64;
    println!(
        "{name:<32} calls {calls:>10}  mean {mean:>9.1} ns  p50 {:>7} ns  p99 {:>7} ns  p99.9 {:>7} ns  max {:>7} ns",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max()
    );
}

fn main() {
    let ping = br#"{"action":"PING","data":{"hostname":"bench-host-00042","state":"active"}}"#;
    let publish = br#"{"action":"PUBLISH","data":{"hostname":"bench-host-00042","fname":"dataset-0042.csv","size":10485760,"modified":1699267500.25,"sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}}"#;
    bench("registry parse PING", 1000, || {
        black_box(decode_request(black_box(ping)).is_ok());
    });
    bench("registry parse PUBLISH", 1000, || {
        black_box(decode_request(black_box(publish)).is_ok());
    });

    // A registry of 10,000 hosts with 5 files each, as the 10k preset builds.
    let mut reg = Registry::default();
    for i in 0..10_000u32 {
        let files = (0..5)
            .map(|j| {
                (
                    format!("file-{i}-{j}.bin"),
                    FileMeta {
                        size: 1024,
                        modified: 1.0,
                        published_at: None,
                        is_published: true,
                        sha256: None,
                        root: None,
                    },
                )
            })
            .collect();
        reg.register(
            &format!("host-{i:05}"),
            "",
            "127.0.0.1",
            6000,
            files,
            None,
            1.0,
        );
    }
    let request = br#"{"action":"REQUEST","data":{"fname":"file-4242-3.bin"}}"#;
    let mut out = Vec::with_capacity(4096);
    bench("registry REQUEST parse+lookup 10k", 1000, || {
        out.clear();
        if let Ok(Request::Request { fname, sha256 }) = decode_request(black_box(request)) {
            reg.request_reply(&fname, sha256.as_deref())
                .encode(&mut out);
        }
        black_box(out.len());
    });
    bench("registry LIST page of 100 at 10k", 100, || {
        out.clear();
        reg.list_page_reply(5000, 100, None).encode(&mut out);
        black_box(out.len());
    });
    let mut t = 2.0;
    bench("registry full LIST rebuild 10k", 1, || {
        t += 2.0; // older than the snapshot's age limit: forces a rebuild
        black_box(reg.list_full(t).len());
    });

    let secret = b"bench-secret";
    let claims = jwt::Claims {
        sub: "bench-host-00042".into(),
        role: "user".into(),
        iat: 1_700_000_000,
        exp: 4_000_000_000,
    };
    let token = jwt::sign(secret, &claims);
    bench("jwt sign", 1000, || {
        black_box(jwt::sign(secret, black_box(&claims)));
    });
    bench("jwt verify", 1000, || {
        black_box(jwt::verify(secret, black_box(&token), 1_800_000_000).is_ok());
    });

    let head = b"GET /api/client/fetch-progress/3f2a9c HTTP/1.1\r\nHost: 127.0.0.1:5501\r\nUser-Agent: Mozilla/5.0\r\nAccept: application/json\r\nAuthorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.e30.x\r\nConnection: keep-alive\r\n\r\n";
    let limits = Limits::default();
    bench("http head parse", 1000, || {
        black_box(matches!(
            parse_http(black_box(head), &limits),
            reactor::http::Parse::Done(..)
        ));
    });
}
