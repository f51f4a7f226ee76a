//! gen-files: write deterministic test files of given sizes and print name, size, SHA-256.

use p2pshare_tools::args::{parse_sizes, size_label, Args};
use p2pshare_tools::{die, gen, report};
use serde_json::json;
use std::path::PathBuf;

const TOOL: &str = "gen-files";
const HELP: &str =
    "usage: gen-files --out DIR [--sizes 10K,100K,1M,10M,100M,1G] [--seed N] [--json FILE]
Writes gen-<size>-s<seed>.bin per size (K, M, G are 1024-based) from a seeded PRNG, in 1 MiB
blocks, and prints `name size sha256` for each. Same size and seed, same bytes.";

fn main() {
    let mut a = Args::from_env(TOOL);
    if a.flag("--help") || a.flag("-h") {
        println!("{HELP}");
        return;
    }
    let out: PathBuf = a
        .value("--out")
        .unwrap_or_else(|| die(TOOL, "--out DIR is required (try --help)"))
        .into();
    let sizes = a
        .value("--sizes")
        .unwrap_or_else(|| "10K,100K,1M,10M,100M,1G".into());
    let sizes = parse_sizes(&sizes).unwrap_or_else(|e| die(TOOL, e));
    let seed: u64 = a.parsed("--seed").unwrap_or(1);
    let json_path: Option<PathBuf> = a.value("--json").map(Into::into);
    a.finish();
    p2pshare_tools::rlimit::raise_and_report(TOOL);

    if let Err(e) = std::fs::create_dir_all(&out) {
        die(TOOL, format!("cannot create {}: {e}", out.display()));
    }
    let mut files = Vec::new();
    for size in sizes {
        let name = format!("gen-{}-s{seed}.bin", size_label(size));
        let path = out.join(&name);
        let t = std::time::Instant::now();
        let sha = gen::write_file(&path, size, seed)
            .unwrap_or_else(|e| die(TOOL, format!("cannot write {}: {e}", path.display())));
        println!("{name} {size} {sha}");
        eprintln!(
            "{TOOL}: {} in {:.2} s",
            path.display(),
            t.elapsed().as_secs_f64()
        );
        files.push(json!({"name": name, "path": path, "size": size, "sha256": sha}));
    }
    if let Some(p) = json_path {
        report::write_json(TOOL, &p, &json!({"seed": seed, "files": files}));
    }
}
