//! Writing results: the `--json FILE` output and small number formatting for the human
//! report. It decides no content.

use serde_json::Value;
use std::path::Path;

/// Write `v` pretty-printed to `path`, or end the process with one line.
pub fn write_json(tool: &str, path: &Path, v: &Value) {
    let text = match serde_json::to_string_pretty(v) {
        Ok(t) => t,
        Err(e) => crate::die(tool, format!("cannot serialise the report: {e}")),
    };
    if let Err(e) = std::fs::write(path, text + "\n") {
        crate::die(tool, format!("cannot write {}: {e}", path.display()));
    }
    eprintln!("{tool}: wrote {}", path.display());
}

/// Round to `digits` decimals for JSON output.
pub fn round(x: f64, digits: i32) -> f64 {
    if !x.is_finite() {
        return 0.0;
    }
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(round(1.23456, 2), 1.23);
        assert_eq!(round(f64::NAN, 2), 0.0);
    }
}
