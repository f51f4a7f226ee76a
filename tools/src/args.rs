//! Hand-written command-line flags (`--name value`, `--name=value`, `--flag`) and the size
//! notation (`10K`, `1M`, `1G`) the tools share; it never touches the network or files.

use std::str::FromStr;

/// The arguments not yet claimed by a flag; `finish` refuses whatever is left over.
pub struct Args {
    tool: &'static str,
    items: Vec<Option<String>>,
}

impl Args {
    pub fn from_env(tool: &'static str) -> Self {
        Args::new(tool, std::env::args().skip(1).collect())
    }

    pub fn new(tool: &'static str, items: Vec<String>) -> Self {
        Args {
            tool,
            items: items.into_iter().map(Some).collect(),
        }
    }

    /// True if the bare flag is present (consumed).
    pub fn flag(&mut self, name: &str) -> bool {
        let mut found = false;
        for it in self.items.iter_mut() {
            if it.as_deref() == Some(name) {
                *it = None;
                found = true;
            }
        }
        found
    }

    /// The value of `--name value` or `--name=value` (the last one wins).
    pub fn value(&mut self, name: &str) -> Option<String> {
        let mut out = None;
        let prefix = format!("{name}=");
        let mut i = 0;
        while i < self.items.len() {
            match self.items[i].as_deref() {
                Some(a) if a == name => {
                    self.items[i] = None;
                    match self.items.get_mut(i + 1).and_then(Option::take) {
                        Some(v) => out = Some(v),
                        None => crate::die(self.tool, format!("{name} needs a value")),
                    }
                    i += 1;
                }
                Some(a) if a.starts_with(&prefix) => {
                    out = Some(a[prefix.len()..].to_string());
                    self.items[i] = None;
                }
                _ => {}
            }
            i += 1;
        }
        out
    }

    /// `value` parsed as `T`; a value that does not parse ends the process with one line.
    pub fn parsed<T: FromStr>(&mut self, name: &str) -> Option<T>
    where
        T::Err: std::fmt::Display,
    {
        let v = self.value(name)?;
        match v.parse::<T>() {
            Ok(x) => Some(x),
            Err(e) => crate::die(self.tool, format!("bad value for {name}: {v:?}: {e}")),
        }
    }

    /// A size in bytes (`10K`, `1M`, ...) for `name`.
    pub fn size(&mut self, name: &str) -> Option<u64> {
        let v = self.value(name)?;
        match parse_size(&v) {
            Ok(x) => Some(x),
            Err(e) => crate::die(self.tool, format!("bad value for {name}: {e}")),
        }
    }

    /// End of parsing: anything unclaimed is an unknown flag and ends the process.
    pub fn finish(self) {
        let left: Vec<String> = self.items.into_iter().flatten().collect();
        if !left.is_empty() {
            crate::die(
                self.tool,
                format!("unknown argument(s): {} (try --help)", left.join(" ")),
            );
        }
    }
}

/// `10K`, `100KB`, `1M`, `1MiB`, `1G`, `512` → bytes. K, M, G are binary (1024-based),
/// so `1G` is one GiB.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: f64 = num.parse().map_err(|_| format!("not a size: {s:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => return Err(format!("unknown size unit in {s:?} (use K, M or G)")),
    };
    let v = n * mult as f64;
    if !(v.is_finite() && (0.0..1e18).contains(&v)) {
        return Err(format!("size out of range: {s:?}"));
    }
    Ok(v.round() as u64)
}

/// A comma-separated list of sizes.
pub fn parse_sizes(s: &str) -> Result<Vec<u64>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(parse_size)
        .collect()
}

/// The short label for a size as the tools print it: `10K`, `1M`, `1G`, or bytes.
pub fn size_label(n: u64) -> String {
    for (unit, m) in [("G", 1u64 << 30), ("M", 1 << 20), ("K", 1 << 10)] {
        if n >= m && n.is_multiple_of(m) {
            return format!("{}{unit}", n / m);
        }
    }
    format!("{n}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_binary_units() {
        assert_eq!(parse_size("10K"), Ok(10 * 1024));
        assert_eq!(parse_size("100kb"), Ok(100 * 1024));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("1.5K"), Ok(1536));
        assert!(parse_size("10X").is_err());
        assert!(parse_size("").is_err());
        assert_eq!(parse_sizes("10K,1M"), Ok(vec![10240, 1 << 20]));
        assert_eq!(size_label(10240), "10K");
        assert_eq!(size_label(1 << 30), "1G");
        assert_eq!(size_label(1000), "1000");
    }

    #[test]
    fn flags_and_values_are_claimed_once() {
        let mut a = Args::new(
            "t",
            ["--x", "1", "--flag", "--y=two", "--x", "3"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        );
        assert_eq!(a.parsed::<u32>("--x"), Some(3));
        assert!(a.flag("--flag"));
        assert!(!a.flag("--flag"));
        assert_eq!(a.value("--y").as_deref(), Some("two"));
        assert_eq!(a.value("--z"), None);
        a.finish();
    }
}
