//! A log-linear bucketing of nanosecond durations: eight sub-buckets per
//! power of two (about 9% resolution) in 512 counters. The loop's turn
//! times (`turns`) and the coordinator's per-action latencies use it, so a
//! minute of samples costs a fixed, small array.

/// Sub-buckets per power of two.
pub const SUB: usize = 8;
/// Counters a histogram needs.
pub const BUCKETS: usize = 64 * SUB;

/// The bucket of a duration in nanoseconds.
pub fn of(ns: u64) -> usize {
    let ns = ns.max(1);
    let exp = 63 - ns.leading_zeros() as usize;
    let frac = if exp >= 3 {
        ((ns >> (exp - 3)) & 7) as usize
    } else {
        0
    };
    exp * SUB + frac
}

/// The upper bound of a bucket, in nanoseconds.
pub fn upper(b: usize) -> u64 {
    let exp = b / SUB;
    let frac = (b % SUB) as u64;
    if exp >= 3 {
        (1u64 << exp).saturating_add((frac + 1) << (exp - 3))
    } else {
        1u64 << (exp + 1)
    }
}
