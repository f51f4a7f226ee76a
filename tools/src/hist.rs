//! Latency histograms per operation (hdrhistogram, microseconds), their fixed summary
//! (count, errors, mean, p50, p95, p99, p99.9, max) and a portable form for merging shards.
//! No I/O.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};
use std::time::Duration;

/// Longest latency we keep apart from others (one hour, in microseconds).
const MAX_US: u64 = 3_600_000_000;

fn empty() -> Histogram<u64> {
    // Constant, valid bounds: creation cannot fail.
    Histogram::new_with_bounds(1, MAX_US, 3).expect("constant histogram bounds are valid")
}

/// One operation's latencies plus the failures that have no latency.
#[derive(Clone)]
pub struct OpHist {
    pub hist: Histogram<u64>,
    /// Answered with ERROR (these also have a latency in `hist`).
    pub errors: u64,
    /// Never answered: broken connection, timeout, failed connect (no latency).
    pub lost: u64,
}

impl Default for OpHist {
    fn default() -> Self {
        OpHist {
            hist: empty(),
            errors: 0,
            lost: 0,
        }
    }
}

/// The fixed summary row; milliseconds with microsecond resolution.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    /// Requests finished: answered (any status) or lost.
    pub count: u64,
    /// ERROR answers plus lost requests.
    pub errors: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl OpHist {
    pub fn record(&mut self, d: Duration) {
        let us = (d.as_micros() as u64).max(1);
        self.hist.saturating_record(us);
    }

    pub fn summary(&self) -> Summary {
        let h = &self.hist;
        let ms = |v: u64| v as f64 / 1000.0;
        let answered = h.len();
        Summary {
            count: answered + self.lost,
            errors: self.errors + self.lost,
            mean_ms: if answered == 0 {
                0.0
            } else {
                h.mean() / 1000.0
            },
            p50_ms: ms(if answered == 0 {
                0
            } else {
                h.value_at_quantile(0.50)
            }),
            p95_ms: ms(if answered == 0 {
                0
            } else {
                h.value_at_quantile(0.95)
            }),
            p99_ms: ms(if answered == 0 {
                0
            } else {
                h.value_at_quantile(0.99)
            }),
            p999_ms: ms(if answered == 0 {
                0
            } else {
                h.value_at_quantile(0.999)
            }),
            max_ms: ms(if answered == 0 { 0 } else { h.max() }),
        }
    }

    pub fn merge(&mut self, other: &OpHist) {
        // Same bounds on both sides, so `add` cannot fail; saturate rather than panic anyway.
        let _ = self.hist.add(&other.hist);
        self.errors += other.errors;
        self.lost += other.lost;
    }

    /// `{"h": base64(V2), "errors": n, "lost": n}`.
    pub fn to_wire(&self) -> Value {
        let mut buf = Vec::new();
        let h = match V2Serializer::new().serialize(&self.hist, &mut buf) {
            Ok(_) => STANDARD.encode(&buf),
            Err(_) => String::new(),
        };
        json!({"h": h, "errors": self.errors, "lost": self.lost})
    }

    pub fn from_wire(v: &Value) -> Result<OpHist, String> {
        let b64 = v["h"].as_str().ok_or("histogram field missing")?;
        let bytes = STANDARD
            .decode(b64)
            .map_err(|e| format!("histogram is not base64: {e}"))?;
        let mut hist: Histogram<u64> = Deserializer::new()
            .deserialize(&mut &bytes[..])
            .map_err(|e| format!("histogram does not deserialize: {e:?}"))?;
        // A shard's histogram may have been auto-sized differently; normalise the bounds.
        let mut out = empty();
        hist.auto(true);
        out.add(&hist)
            .map_err(|e| format!("histogram does not merge: {e:?}"))?;
        Ok(OpHist {
            hist: out,
            errors: v["errors"].as_u64().unwrap_or(0),
            lost: v["lost"].as_u64().unwrap_or(0),
        })
    }
}

impl Summary {
    pub fn to_json(&self) -> Value {
        let r = |x: f64| (x * 1000.0).round() / 1000.0;
        json!({
            "count": self.count,
            "errors": self.errors,
            "mean_ms": r(self.mean_ms),
            "p50_ms": r(self.p50_ms),
            "p95_ms": r(self.p95_ms),
            "p99_ms": r(self.p99_ms),
            "p999_ms": r(self.p999_ms),
            "max_ms": r(self.max_ms),
        })
    }
}

/// A fixed, named list of operations; every report prints all of them in this order, even
/// ones with no samples, so two runs compare line by line.
#[derive(Clone)]
pub struct OpSet {
    pub names: &'static [&'static str],
    pub ops: Vec<OpHist>,
}

impl OpSet {
    pub fn new(names: &'static [&'static str]) -> Self {
        OpSet {
            names,
            ops: vec![OpHist::default(); names.len()],
        }
    }

    pub fn get(&mut self, i: usize) -> &mut OpHist {
        &mut self.ops[i]
    }

    /// The same histograms under a shorter fixed list (names missing here are left out).
    pub fn subset(&self, names: &'static [&'static str]) -> OpSet {
        let ops = names
            .iter()
            .map(|n| match self.names.iter().position(|m| m == n) {
                Some(i) => self.ops[i].clone(),
                None => OpHist::default(),
            })
            .collect();
        OpSet { names, ops }
    }

    pub fn merge(&mut self, other: &OpSet) {
        for (a, b) in self.ops.iter_mut().zip(&other.ops) {
            a.merge(b);
        }
    }

    /// Total answered requests (any status) over all operations.
    pub fn answered(&self) -> u64 {
        self.ops.iter().map(|o| o.hist.len()).sum()
    }

    pub fn to_wire(&self) -> Value {
        let mut m = Map::new();
        for (n, o) in self.names.iter().zip(&self.ops) {
            m.insert(n.to_string(), o.to_wire());
        }
        Value::Object(m)
    }

    /// Merge a shard's `to_wire` output into this set (operations by name).
    pub fn merge_wire(&mut self, v: &Value) -> Result<(), String> {
        for (i, n) in self.names.iter().enumerate() {
            if let Some(w) = v.get(*n) {
                let o = OpHist::from_wire(w).map_err(|e| format!("{n}: {e}"))?;
                self.ops[i].merge(&o);
            }
        }
        Ok(())
    }

    /// `{"OP": {count, errors, mean_ms, ...}, ...}` in the fixed order.
    pub fn summary_json(&self) -> Value {
        let mut m = Map::new();
        for (n, o) in self.names.iter().zip(&self.ops) {
            m.insert(n.to_string(), o.summary().to_json());
        }
        Value::Object(m)
    }

    /// The fixed table, one row per operation.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<12} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            "op", "count", "errors", "mean_ms", "p50_ms", "p95_ms", "p99_ms", "p99.9_ms", "max_ms"
        );
        for (n, o) in self.names.iter().zip(&self.ops) {
            let x = o.summary();
            s.push_str(&format!(
                "{:<12} {:>9} {:>7} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}\n",
                n, x.count, x.errors, x.mean_ms, x.p50_ms, x.p95_ms, x.p99_ms, x.p999_ms, x.max_ms
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_reports_percentiles_in_ms_and_counts_lost_as_errors() {
        let mut o = OpHist::default();
        for us in 1..=1000u64 {
            o.record(Duration::from_micros(us * 10));
        }
        o.errors = 2;
        o.lost = 3;
        let s = o.summary();
        assert_eq!(s.count, 1003);
        assert_eq!(s.errors, 5);
        assert!((s.p50_ms - 5.0).abs() < 0.01, "{s:?}");
        assert!((s.p99_ms - 9.9).abs() < 0.02, "{s:?}");
        assert!((s.max_ms - 10.0).abs() < 0.02, "{s:?}");
        assert!((s.mean_ms - 5.005).abs() < 0.01, "{s:?}");
    }

    #[test]
    fn wire_round_trip_merges_like_in_process() {
        static NAMES: &[&str] = &["A", "B"];
        let mut x = OpSet::new(NAMES);
        let mut y = OpSet::new(NAMES);
        for i in 1..500u64 {
            x.get(0).record(Duration::from_micros(i));
            y.get(0).record(Duration::from_micros(i * 3));
        }
        y.get(1).lost = 4;
        let mut direct = x.clone();
        direct.merge(&y);
        let mut via = x.clone();
        via.merge_wire(&y.to_wire()).unwrap();
        assert_eq!(direct.ops[0].summary(), via.ops[0].summary());
        assert_eq!(via.ops[1].summary().errors, 4);
        assert!(via.table().lines().count() == 3);
        assert!(OpSet::new(NAMES)
            .merge_wire(&json!({"A": {"h": "!!"}}))
            .is_err());
    }

    #[test]
    fn empty_histogram_summarises_to_zeros() {
        let s = OpHist::default().summary();
        assert_eq!(s, Summary::default());
    }
}

/// Error messages and how often each came, digits dropped so ports and sizes do not make
/// every message unique.
#[derive(Debug, Default, Clone)]
pub struct Reasons(pub std::collections::BTreeMap<String, u64>);

impl Reasons {
    pub fn add(&mut self, e: &str) {
        self.add_n(e, 1);
    }

    pub fn add_n(&mut self, e: &str, n: u64) {
        let key: String = e
            .chars()
            .filter(|c| !c.is_ascii_digit())
            .take(120)
            .collect();
        *self.0.entry(key).or_insert(0) += n;
    }

    pub fn merge_json(&mut self, v: &Value) {
        if let Some(m) = v.as_object() {
            for (k, n) in m {
                *self.0.entry(k.clone()).or_insert(0) += n.as_u64().unwrap_or(0);
            }
        }
    }

    pub fn to_json(&self) -> Value {
        json!(self.0)
    }

    /// The most frequent reasons, one per line, for the human report.
    pub fn top(&self, n: usize) -> String {
        let mut v: Vec<(&String, &u64)> = self.0.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1));
        v.iter()
            .take(n)
            .map(|(k, c)| format!("  {c:>8}  {k}\n"))
            .collect()
    }
}
