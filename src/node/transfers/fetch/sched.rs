//! Which piece a connection asks for next. Pieces are taken lowest first
//! (the whole-file hash advances in order, so early pieces are read back
//! from the page cache while still there); each connection pulls a new
//! piece whenever one of its requests completes, so a faster host gets more
//! pieces. When nothing is left unasked, a piece another host is still
//! sending may be asked of a second host (endgame) once that host has had
//! it for [`ENDGAME_AFTER`] (so a small file is not fetched twice); the
//! copy verified first wins and the other is only checked. Pure: no I/O.

use std::time::{Duration, Instant};

use crate::proto::peer::{piece_count, PIECE_SIZE};

/// A piece asked this long ago may be asked of a second host.
pub const ENDGAME_AFTER: Duration = Duration::from_millis(500);

pub struct Sched {
    size: u64,
    have: Vec<bool>,
    have_n: u64,
    /// Bytes in verified pieces (asked on every read for the progress).
    have_bytes: u64,
    /// Requests out per piece (0, 1, or 2 in the endgame).
    asked: Vec<u8>,
    /// Received and on a worker being checked: never asked twice meanwhile.
    busy: Vec<bool>,
    /// When a piece asked once was asked.
    asked_at: Vec<Option<Instant>>,
    /// Every piece below this is verified or asked (a search hint).
    low: usize,
}

impl Sched {
    /// For a file of `size` bytes, with the pieces of `have` already verified.
    pub fn new(size: u64, have: Option<Vec<bool>>) -> Sched {
        let n = usize::try_from(piece_count(size)).unwrap_or(0);
        let have = have
            .filter(|h| h.len() == n)
            .unwrap_or_else(|| vec![false; n]);
        let have_n = have.iter().filter(|b| **b).count() as u64;
        let mut s = Sched {
            size,
            have,
            have_n,
            have_bytes: 0,
            asked: vec![0; n],
            busy: vec![false; n],
            asked_at: vec![None; n],
            low: 0,
        };
        s.have_bytes = (0..s.count())
            .filter(|&i| s.have[i as usize])
            .map(|i| s.len(i))
            .sum();
        s
    }

    pub fn count(&self) -> u64 {
        self.have.len() as u64
    }

    pub fn offset(&self, piece: u64) -> u64 {
        piece * PIECE_SIZE
    }

    pub fn len(&self, piece: u64) -> u64 {
        self.size.saturating_sub(piece * PIECE_SIZE).min(PIECE_SIZE)
    }

    pub fn have(&self, piece: u64) -> bool {
        usize::try_from(piece)
            .ok()
            .and_then(|i| self.have.get(i))
            .copied()
            .unwrap_or(false)
    }

    pub fn bits(&self) -> &[bool] {
        &self.have
    }

    pub fn complete(&self) -> bool {
        self.have_n == self.count()
    }

    /// Bytes in verified pieces.
    pub fn verified_bytes(&self) -> u64 {
        self.have_bytes
    }

    /// The next piece for a connection already asking for `mine`, marked
    /// asked; with `endgame` (now), a piece one other connection has been
    /// sending for [`ENDGAME_AFTER`].
    pub fn pick(&mut self, mine: &[u64], endgame: Option<Instant>) -> Option<u64> {
        while self.low < self.have.len() && (self.have[self.low] || self.asked[self.low] > 0) {
            self.low += 1;
        }
        if self.low < self.have.len() {
            self.asked[self.low] += 1;
            self.asked_at[self.low] = endgame;
            return Some(self.low as u64);
        }
        let now = endgame?;
        let i = (0..self.have.len()).find(|&i| {
            self.lone(i, mine)
                && self.asked_at[i]
                    .is_none_or(|t| now.saturating_duration_since(t) >= ENDGAME_AFTER)
        })?;
        self.asked[i] += 1;
        Some(i as u64)
    }

    /// A piece asked of one connection only, not `mine`, not being checked.
    fn lone(&self, i: usize, mine: &[u64]) -> bool {
        !self.have[i] && !self.busy[i] && self.asked[i] == 1 && !mine.contains(&(i as u64))
    }

    /// How long until some piece may be asked of a second host (None: none can).
    pub fn endgame_wait(&self, now: Instant) -> Option<Duration> {
        (0..self.have.len())
            .filter(|&i| self.lone(i, &[]))
            .filter_map(|i| self.asked_at[i])
            .map(|t| ENDGAME_AFTER.saturating_sub(now.saturating_duration_since(t)))
            .min()
    }

    /// `piece` arrived and went to a worker to be checked.
    pub fn handed(&mut self, piece: u64) {
        if let Some(b) = usize::try_from(piece)
            .ok()
            .and_then(|i| self.busy.get_mut(i))
        {
            *b = true;
        }
    }

    /// A request for `piece` ended without a verified piece: it may be asked again.
    pub fn release(&mut self, piece: u64) {
        let Ok(i) = usize::try_from(piece) else {
            return;
        };
        if let Some(b) = self.busy.get_mut(i) {
            *b = false;
        }
        if let Some(a) = self.asked.get_mut(i) {
            *a = a.saturating_sub(1);
            if *a == 0 && !self.have[i] {
                self.low = self.low.min(i);
            }
        }
    }

    /// `piece` was verified and written (its request ends). True the first time.
    pub fn verified(&mut self, piece: u64) -> bool {
        let Ok(i) = usize::try_from(piece) else {
            return false;
        };
        if i >= self.have.len() {
            return false;
        }
        self.asked[i] = self.asked[i].saturating_sub(1);
        self.busy[i] = false;
        if self.have[i] {
            return false;
        }
        self.have[i] = true;
        self.have_n += 1;
        self.have_bytes += self.len(piece);
        true
    }

    /// Verified pieces from `from` on, in a row: the end of that run.
    pub fn run_from(&self, from: u64) -> u64 {
        let mut i = from;
        while self.have(i) {
            i += 1;
        }
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_go_lowest_first_then_the_endgame_doubles_the_last() {
        let mut s = Sched::new(3 * PIECE_SIZE + 1, None);
        assert_eq!(s.count(), 4);
        assert_eq!(s.len(3), 1);
        let t0 = Instant::now();
        let e = Some(t0);
        assert_eq!((s.pick(&[], e), s.pick(&[], e)), (Some(0), Some(1)));
        assert_eq!((s.pick(&[], e), s.pick(&[], e)), (Some(2), Some(3)));
        // Nothing unasked: not at once (a small file is not fetched twice)...
        assert_eq!(s.pick(&[0, 1, 2], e), None);
        assert_eq!(s.endgame_wait(t0), Some(ENDGAME_AFTER));
        // ...then a piece another connection has, never one it asked itself.
        let later = Some(t0 + ENDGAME_AFTER);
        assert_eq!(s.pick(&[0, 1, 2], later), Some(3));
        assert_eq!(s.pick(&[], None), None);
        s.handed(3);
        assert_eq!(
            s.pick(&[0, 1, 2], later),
            None,
            "a piece being checked is not asked again"
        );
        assert!(s.verified(3));
        assert!(!s.verified(3), "the slower copy is no news");
        s.release(1);
        assert_eq!(s.pick(&[], None), Some(1));
        for p in [0, 1, 2] {
            s.verified(p);
        }
        assert!(s.complete());
        assert_eq!(s.run_from(0), 4);
        assert_eq!(s.verified_bytes(), 3 * PIECE_SIZE + 1);
    }

    #[test]
    fn a_resumed_bitmap_is_not_asked_again() {
        let mut s = Sched::new(3 * PIECE_SIZE, Some(vec![true, false, true]));
        assert_eq!(s.pick(&[], Some(Instant::now())), Some(1));
        assert_eq!(s.pick(&[], None), None);
        assert_eq!(s.run_from(0), 1);
        let empty = Sched::new(0, None);
        assert!(empty.complete());
    }
}
