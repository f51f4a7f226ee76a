//! Running a tool's load as child processes of itself (one process holds only ~20,000
//! descriptors) and the line protocol between parent and children:
//! child → parent on stdout: `PROG <json>`, `READY`, `RESULT <json>`, `FAIL <message>`;
//! parent → child on stdin: `GO`, `EXIT`. Children's stderr is the parent's.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::Duration;

pub enum Msg {
    Line(String),
    /// The child's stdout closed (it exited or crashed).
    Eof,
}

pub struct Shards {
    children: Vec<Child>,
    stdins: Vec<Option<ChildStdin>>,
    rx: Receiver<(usize, Msg)>,
}

/// How many items of `total` shard `i` of `n` gets, and where its range starts.
pub fn split(total: usize, i: usize, n: usize) -> (usize, usize) {
    let n = n.max(1);
    let (base, extra) = (total / n, total % n);
    let count = base + usize::from(i < extra);
    let start = i * base + i.min(extra);
    (start, count)
}

impl Shards {
    /// Start `n` copies of this executable with `args(i)`.
    pub fn spawn(n: usize, args: impl Fn(usize) -> Vec<String>) -> Result<Shards, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find my own binary: {e}"))?;
        let (tx, rx) = channel();
        let mut children = Vec::new();
        let mut stdins = Vec::new();
        for i in 0..n {
            let mut child = Command::new(&exe)
                .args(args(i))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| format!("cannot start shard {i}: {e}"))?;
            stdins.push(child.stdin.take());
            let out = child.stdout.take();
            let tx = tx.clone();
            std::thread::spawn(move || {
                if let Some(out) = out {
                    for line in BufReader::new(out).lines() {
                        match line {
                            Ok(l) => {
                                if tx.send((i, Msg::Line(l))).is_err() {
                                    return;
                                }
                            }
                            Err(_) => break,
                        }
                    }
                }
                let _ = tx.send((i, Msg::Eof));
            });
            children.push(child);
        }
        Ok(Shards {
            children,
            stdins,
            rx,
        })
    }

    pub fn len(&self) -> usize {
        self.children.len()
    }

    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// The children's process ids (to sample their CPU).
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    pub fn broadcast(&mut self, line: &str) {
        for s in self.stdins.iter_mut().flatten() {
            let _ = writeln!(s, "{line}");
            let _ = s.flush();
        }
    }

    pub fn recv(&self, timeout: Duration) -> Option<(usize, Msg)> {
        match self.rx.recv_timeout(timeout) {
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Wait until every child has sent a line starting with `word`; return the rest of
    /// each such line, by shard. `PROG` lines go to `progress(shard, json)`. A child that
    /// fails or exits first ends the wait with its message.
    pub fn collect(
        &mut self,
        word: &str,
        mut progress: impl FnMut(usize, &str),
    ) -> Result<Vec<String>, String> {
        let n = self.len();
        let mut got: Vec<Option<String>> = vec![None; n];
        let mut left = n;
        while left > 0 {
            let Some((i, msg)) = self.recv(Duration::from_millis(200)) else {
                progress(usize::MAX, "");
                continue;
            };
            match msg {
                Msg::Line(l) => {
                    if let Some(p) = l.strip_prefix("PROG ") {
                        progress(i, p);
                    } else if let Some(f) = l.strip_prefix("FAIL ") {
                        return Err(f.to_string());
                    } else if l == word || l.starts_with(&format!("{word} ")) {
                        if got[i].is_none() {
                            left -= 1;
                        }
                        got[i] = Some(l[word.len()..].trim_start().to_string());
                    }
                }
                Msg::Eof => {
                    if got[i].is_none() {
                        return Err(format!("shard {i} exited before {word}"));
                    }
                }
            }
        }
        Ok(got.into_iter().map(Option::unwrap_or_default).collect())
    }

    /// Tell every child to exit and wait for them.
    pub fn finish(mut self) {
        self.broadcast("EXIT");
        self.stdins.clear();
        for c in self.children.iter_mut() {
            let _ = c.wait();
        }
    }

    /// End the children we started (on failure).
    pub fn kill(mut self) {
        self.kill_all();
    }

    /// End the children we started, keeping the handle.
    pub fn kill_all(&mut self) {
        for c in self.children.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Child side: one protocol line on stdout.
pub fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Child side: the next line from the parent (None when the parent is gone).
pub fn wait_line() -> Option<String> {
    let mut s = String::new();
    match std::io::stdin().lock().read_line(&mut s) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(s.trim().to_string()),
    }
}

/// Child side: wait for `GO`; false if the parent said EXIT or went away.
pub fn wait_go() -> bool {
    matches!(wait_line().as_deref(), Some("GO"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_everything_once() {
        for total in [0, 1, 7, 100, 101] {
            for n in 1..5 {
                let mut next = 0;
                for i in 0..n {
                    let (start, count) = split(total, i, n);
                    assert_eq!(start, next);
                    next += count;
                }
                assert_eq!(next, total);
            }
        }
    }
}
