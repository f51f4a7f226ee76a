//! The live progress line on stderr: rewritten in place on a terminal, a plain line every
//! few seconds otherwise (logs stay readable).

use std::io::Write;
use std::time::{Duration, Instant};

pub struct Progress {
    tty: bool,
    last: Option<Instant>,
    start: Instant,
    shown: bool,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    pub fn new() -> Self {
        // SAFETY: isatty only inspects the descriptor.
        let tty = unsafe { libc::isatty(2) == 1 };
        Progress {
            tty,
            last: None,
            start: Instant::now(),
            shown: false,
        }
    }

    /// Show `line` (prefixed by elapsed seconds) if enough time has passed since the last.
    pub fn update(&mut self, line: &str) {
        let every = if self.tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        };
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < every) {
            return;
        }
        self.last = Some(now);
        let el = now.duration_since(self.start).as_secs_f64();
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[K[{el:7.1}s] {line}");
            self.shown = true;
        } else {
            let _ = writeln!(err, "[{el:7.1}s] {line}");
        }
        let _ = err.flush();
    }

    /// Clear the in-place line so the report starts on a clean line.
    pub fn clear(&mut self) {
        if self.tty && self.shown {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
            self.shown = false;
        }
        self.last = None;
    }
}
