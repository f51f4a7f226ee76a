//! Hot-path micro-benchmarks (filled in by the bench-tools work).
fn main() {}
