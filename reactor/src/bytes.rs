//! Byte classes eight bytes at a time (SWAR: a `u64` as eight lanes), for
//! the scans every request line goes through: its newline, the end of each
//! JSON string, whether a name or a reply string holds a byte it may not.
//! Byte by byte these were a fifth of the registry's instructions per
//! pipelined answer (docs/architecture.md, "Stalls and the per-answer cost").
//!
//! A class is a function from a word to a mask with the high bit set in
//! each lane that belongs to the class, built from [`eq`] and [`below`].
//! Both may also flag lanes *above* a true member (a borrow runs upwards),
//! never below one: so the lowest flagged lane is exact, and a mask that is
//! zero means no lane belongs.

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Lanes equal to `b`.
#[inline(always)]
pub fn eq(w: u64, b: u8) -> u64 {
    let v = w ^ (LO * u64::from(b));
    v.wrapping_sub(LO) & !v & HI
}

/// Lanes below `n`, for `n` ≤ 0x80 (so bytes ≥ 0x80 are never flagged).
#[inline(always)]
pub fn below(w: u64, n: u8) -> u64 {
    debug_assert!(n <= 0x80);
    w.wrapping_sub(LO * u64::from(n)) & !w & HI
}

/// Lanes that are not ASCII.
#[inline(always)]
pub fn non_ascii(w: u64) -> u64 {
    w & HI
}

/// Eight bytes as a word, first byte in the lowest lane.
#[inline(always)]
fn load(c: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&c[..8]);
    u64::from_le_bytes(w)
}

/// The bytes after the last whole word of `hay`, in the low lanes of a
/// word, and those lanes' high bits; None when there are none. The lanes
/// above are zero and masked off: they sit above every real lane and a
/// borrow only runs upwards, so they cannot disturb a real lane's flag.
#[inline(always)]
fn tail(hay: &[u8]) -> Option<(u64, u64)> {
    let n = hay.len() % 8;
    if n == 0 {
        return None;
    }
    let w = if hay.len() >= 8 {
        // The last eight bytes, shifted down: one load, no copy loop.
        load(&hay[hay.len() - 8..]) >> (8 * (8 - n))
    } else {
        hay.iter().rev().fold(0u64, |w, &b| (w << 8) | u64::from(b))
    };
    Some((w, HI >> (8 * (8 - n))))
}

/// The first byte of `hay` in `class`.
#[inline(always)]
pub fn first_of(hay: &[u8], class: impl Fn(u64) -> u64) -> Option<usize> {
    let mut at = 0;
    for c in hay.chunks_exact(8) {
        let m = class(load(c));
        if m != 0 {
            return Some(at + (m.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let (w, lanes) = tail(hay)?;
    let m = class(w) & lanes;
    (m != 0).then(|| at + (m.trailing_zeros() / 8) as usize)
}

/// Whether any byte of `hay` is in `class` (without an early exit: meant
/// for short strings that almost never hold one).
#[inline(always)]
pub fn any_of(hay: &[u8], class: impl Fn(u64) -> u64) -> bool {
    let whole = hay.chunks_exact(8).fold(0, |acc, c| acc | class(load(c)));
    let last = tail(hay).map_or(0, |(w, lanes)| class(w) & lanes);
    whole | last != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn special(w: u64) -> u64 {
        eq(w, b'"') | eq(w, b'\\') | below(w, 0x20) | eq(w, 0x7f)
    }

    fn is_special(b: u8) -> bool {
        b == b'"' || b == b'\\' || b < 0x20 || b == 0x7f
    }

    /// Every length up to 40 with bytes drawn near the class's edges (and
    /// high bytes, where carries and borrows go wrong): the same answers as
    /// a byte-by-byte scan.
    #[test]
    fn agrees_with_a_byte_by_byte_scan() {
        let pool = [
            b'"', b'\\', 0x1f, 0x20, 0x21, 0x00, 0x7f, 0x7e, 0x80, 0xff, 0xa2, 0xdc, b'a', b'/',
        ];
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for len in 0..40 {
            for _ in 0..400 {
                let hay: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        // Mostly harmless bytes, so matches land anywhere.
                        if x.is_multiple_of(5) {
                            pool[(x / 5 % pool.len() as u64) as usize]
                        } else {
                            b'a' + (x % 26) as u8
                        }
                    })
                    .collect();
                let want = hay.iter().position(|&b| is_special(b));
                assert_eq!(first_of(&hay, special), want, "{hay:?}");
                assert_eq!(any_of(&hay, special), want.is_some(), "{hay:?}");
                assert_eq!(any_of(&hay, non_ascii), !hay.is_ascii(), "{hay:?}");
                let slash = hay.iter().position(|&b| b == b'/');
                assert_eq!(first_of(&hay, |w| eq(w, b'/')), slash, "{hay:?}");
            }
        }
    }

    #[test]
    fn every_byte_value_in_every_lane() {
        for lane in 0..8 {
            for b in 0..=255u8 {
                let mut hay = [b'a'; 8];
                hay[lane] = b;
                let want = is_special(b).then_some(lane);
                assert_eq!(first_of(&hay, special), want, "{b:#x} at {lane}");
                assert_eq!(first_of(&hay[..lane + 1], special), want);
            }
        }
    }
}
