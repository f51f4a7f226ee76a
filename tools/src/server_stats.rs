//! What the coordinator itself says it spent: its `/api/stats` (service time
//! per registry action and the loop's turn times, each over its last minute),
//! polled during a run so the report can put the server's own figures beside
//! the client-observed latency. On two cores the clients take half the CPU,
//! and a client-side p99 alone cannot say whose time it was.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};

use crate::http::Client;

/// The worst loop-turn figures seen across the polls, and the last stats.
#[derive(Default, Clone)]
pub struct Seen {
    pub polls: u64,
    pub loop_max_ms: f64,
    pub loop_p99_ms: f64,
    pub loop_p999_ms: f64,
    pub over_2ms: u64,
    pub last: Value,
}

pub struct Poller {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    thread: Option<JoinHandle<()>>,
    api: String,
}

fn fold(seen: &mut Seen, v: Value) {
    let l = &v["loop"];
    let f = |k: &str| l[k].as_f64().unwrap_or(0.0);
    seen.polls += 1;
    seen.loop_max_ms = seen.loop_max_ms.max(f("max_ms"));
    seen.loop_p99_ms = seen.loop_p99_ms.max(f("p99_ms"));
    seen.loop_p999_ms = seen.loop_p999_ms.max(f("p999_ms"));
    // Windows overlap between polls: the largest count is a lower bound.
    seen.over_2ms = seen.over_2ms.max(l["over_2ms"].as_u64().unwrap_or(0));
    seen.last = v;
}

impl Poller {
    /// Polls `api`'s `/api/stats` every `every` until stopped.
    pub fn start(api: &str, every: Duration) -> Result<Poller, String> {
        let mut client = Client::new(api)?;
        client.ok("GET", "/api/stats", None, None)?;
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (stop2, seen2) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            let tick = Duration::from_millis(100);
            let mut waited = every;
            while !stop2.load(Ordering::Relaxed) {
                if waited >= every {
                    waited = Duration::ZERO;
                    if let Ok(v) = client.ok("GET", "/api/stats", None, None) {
                        if let Ok(mut s) = seen2.lock() {
                            fold(&mut s, v);
                        }
                    }
                }
                std::thread::sleep(tick);
                waited += tick;
            }
        });
        Ok(Poller {
            stop,
            seen,
            thread: Some(thread),
            api: api.to_string(),
        })
    }

    /// Stops polling, takes one last look and returns what was seen.
    pub fn finish(mut self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let mut seen = self.seen.lock().map(|s| s.clone()).unwrap_or_default();
        if let Ok(v) =
            Client::new(&self.api).and_then(|mut c| c.ok("GET", "/api/stats", None, None))
        {
            fold(&mut seen, v);
        }
        seen
    }
}

/// The registry actions the coordinator times, in report order.
pub const ACTIONS: &[&str] = &[
    "REGISTER",
    "PUBLISH",
    "UNPUBLISH",
    "REQUEST",
    "DISCOVER",
    "PING",
    "LIST",
    "UNREGISTER",
];

impl Seen {
    /// The server-side table: service time per action (last minute) and
    /// the loop's turns (worst across the run's polls).
    pub fn table(&self) -> String {
        let mut s = String::from(
            "coordinator's own figures (/api/stats, last minute): service time per action\n\
             action        count      p50 ms    p99 ms\n",
        );
        for a in ACTIONS {
            let o = &self.last["ops"][*a];
            let count = o["count_60s"].as_u64().unwrap_or(0);
            if count == 0 {
                continue;
            }
            s.push_str(&format!(
                "{a:<12} {count:>7}  {:>9.3} {:>9.3}\n",
                o["p50_ms"].as_f64().unwrap_or(0.0),
                o["p99_ms"].as_f64().unwrap_or(0.0)
            ));
        }
        s.push_str(&format!(
            "loop turns (worst of {} polls): p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms  over 2 ms: {}\n",
            self.polls, self.loop_p99_ms, self.loop_p999_ms, self.loop_max_ms, self.over_2ms
        ));

        s
    }

    pub fn to_json(&self) -> Value {
        let mut ops = serde_json::Map::new();
        for a in ACTIONS {
            let o = &self.last["ops"][*a];
            if o["count_60s"].as_u64().unwrap_or(0) > 0 {
                ops.insert(
                    a.to_string(),
                    json!({"count_60s": o["count_60s"], "p50_ms": o["p50_ms"], "p99_ms": o["p99_ms"]}),
                );
            }
        }
        json!({
            "ops": ops,
            "loop": {"polls": self.polls, "p99_ms": self.loop_p99_ms, "p999_ms": self.loop_p999_ms,
                     "max_ms": self.loop_max_ms, "over_2ms_min": self.over_2ms},
            "clients_total": self.last["clients_total"],
            "files_total": self.last["files_total"],
        })
    }
}
