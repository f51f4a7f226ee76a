//! One connection of a fetch to one host: the requests it has out, in
//! order (`INFO`, `PIECES`, several `RANGE`s pipelined, one piece each, see
//! docs/peer-protocol.md), and reading their answers: a `LENGTH` line and
//! its body into the piece's buffer, a `PIECES` line and its digests. Pure
//! protocol state: the caller reads the socket and acts on the events.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use reactor::{ConnId, TimerId};

use crate::proto::peer::{self, Answer, Decoded, ErrorCode, DIGEST_LEN, PIECE_SIZE};

/// What an answer in the queue is expected to be.
pub enum Expect {
    Info,
    /// The digest list of `count` pieces.
    Pieces {
        count: u64,
    },
    /// One piece, read into `buf` (reserved when asked: memory stays
    /// bounded by what is asked). `discard`: another host's copy won.
    Range {
        piece: u64,
        len: u64,
        buf: Vec<u8>,
        discard: bool,
    },
}

pub enum Event {
    /// INFO: size and SHA-256; None when the peer could not tell yet.
    Info(Option<(u64, String)>),
    /// A complete digest list.
    List(Vec<u8>),
    Piece {
        piece: u64,
        buf: Vec<u8>,
        discard: bool,
    },
    /// The host cannot go on; why.
    Fail(String),
}

/// What a call to [`Link::feed`] did.
pub struct Fed {
    pub used: usize,
    /// Payload bytes received.
    pub body: u64,
    pub events: Vec<Event>,
}

pub struct Link {
    pub conn: ConnId,
    pub host: String,
    pub addr: String,
    /// Connect timeout (timer, its key) until connected.
    pub connecting: Option<(TimerId, u64)>,
    queue: VecDeque<Expect>,
    /// Payload bytes of the front `Range` still to come, once its LENGTH came.
    body: Option<u64>,
    /// Digest bytes still to come for the front `Pieces`.
    list: Option<(usize, Vec<u8>)>,
    pub bytes: u64,
    /// (when, bytes) samples for the speed, newest last.
    samples: VecDeque<(Instant, u64)>,
}

const SPEED_WINDOW: Duration = Duration::from_secs(3);

impl Link {
    /// A connection being made; `connecting` is its connect timeout.
    pub fn new(
        conn: ConnId,
        host: String,
        addr: String,
        connecting: Option<(TimerId, u64)>,
    ) -> Link {
        Link {
            conn,
            host,
            addr,
            connecting,
            queue: VecDeque::new(),
            body: None,
            list: None,
            bytes: 0,
            samples: VecDeque::new(),
        }
    }

    pub fn push(&mut self, e: Expect) {
        self.queue.push_back(e);
    }

    /// Pieces asked of this host and not yet received.
    pub fn pieces(&self) -> Vec<u64> {
        self.queue
            .iter()
            .filter_map(|e| match e {
                Expect::Range { piece, .. } => Some(*piece),
                _ => None,
            })
            .collect()
    }

    pub fn ranges(&self) -> usize {
        self.queue
            .iter()
            .filter(|e| matches!(e, Expect::Range { .. }))
            .count()
    }

    /// Bytes received into buffers not yet complete.
    pub fn partial(&self) -> u64 {
        match self.queue.front() {
            Some(Expect::Range { buf, discard, .. }) if !discard => buf.len() as u64,
            _ => 0,
        }
    }

    /// Another host's copy of `piece` was verified: this one is thrown away.
    pub fn discard(&mut self, piece: u64) {
        for e in self.queue.iter_mut() {
            if let Expect::Range {
                piece: p, discard, ..
            } = e
            {
                if *p == piece {
                    *discard = true;
                }
            }
        }
    }

    /// The connection ends: the pieces it was asked and their buffers.
    pub fn take_asked(&mut self) -> Vec<(u64, Vec<u8>)> {
        self.queue
            .drain(..)
            .filter_map(|e| match e {
                Expect::Range { piece, buf, .. } => Some((piece, buf)),
                _ => None,
            })
            .collect()
    }

    pub fn sample(&mut self, now: Instant) {
        if self
            .samples
            .back()
            .is_none_or(|(t, _)| now.duration_since(*t) >= Duration::from_millis(100))
        {
            self.samples.push_back((now, self.bytes));
            while self.samples.len() > 64 {
                self.samples.pop_front();
            }
        }
    }

    /// Bytes per second over the last few seconds.
    pub fn speed(&self, now: Instant) -> u64 {
        let base = self
            .samples
            .iter()
            .find(|(t, _)| now.saturating_duration_since(*t) <= SPEED_WINDOW)
            .or(self.samples.back());
        let Some(&(t, bytes)) = base else {
            return 0;
        };
        let span = now.saturating_duration_since(t).as_secs_f64();
        if span < 0.05 {
            return 0;
        }
        (self.bytes.saturating_sub(bytes) as f64 / span) as u64
    }

    /// Pieces to keep asked of this host: about 100 ms of its speed, 3 to
    /// 8 (3–8 MiB pipelined), so a fast host never waits a round trip and a
    /// slow one holds few pieces back.
    pub fn depth(&self, now: Instant) -> usize {
        let tenth = self.speed(now) / 10;
        (tenth / PIECE_SIZE).clamp(3, 8) as usize
    }

    /// Reads answers from `input`.
    pub fn feed(&mut self, input: &[u8]) -> Fed {
        let mut fed = Fed {
            used: 0,
            body: 0,
            events: Vec::new(),
        };
        loop {
            let rest = &input[fed.used..];
            if let Some((need, got)) = self.list.as_mut() {
                let n = (*need - got.len()).min(rest.len());
                got.extend_from_slice(&rest[..n]);
                fed.used += n;
                if got.len() < *need {
                    return fed;
                }
                let (_, list) = self.list.take().unwrap_or_default();
                self.queue.pop_front();
                fed.events.push(Event::List(list));
                continue;
            }
            if let Some(left) = self.body {
                let Some(Expect::Range { buf, .. }) = self.queue.front_mut() else {
                    self.body = None;
                    fed.events
                        .push(Event::Fail(format!("{} answered out of turn", self.host)));
                    return fed;
                };
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
                buf.extend_from_slice(&rest[..n]);
                fed.used += n;
                fed.body += n as u64;
                self.bytes += n as u64;
                let left = left - n as u64;
                if left > 0 {
                    self.body = Some(left);
                    return fed;
                }
                self.body = None;
                if let Some(Expect::Range {
                    piece,
                    buf,
                    discard,
                    ..
                }) = self.queue.pop_front()
                {
                    fed.events.push(Event::Piece {
                        piece,
                        buf,
                        discard,
                    });
                }
                continue;
            }
            if rest.is_empty() {
                return fed;
            }
            let (answer, used) = match peer::decode_reply(rest) {
                Decoded::Partial => return fed,
                Decoded::Frame(a, used) => (a, used),
                Decoded::Invalid(..) | Decoded::TooLong => {
                    let msg = format!("{} does not speak the peer protocol", self.host);
                    fed.events.push(Event::Fail(msg));
                    return fed;
                }
            };
            fed.used += used;
            if let Err(msg) = self.answer(answer, &mut fed) {
                fed.events.push(Event::Fail(msg));
                return fed;
            }
        }
    }

    /// One answer line for the front of the queue.
    fn answer(&mut self, answer: Answer, fed: &mut Fed) -> Result<(), String> {
        let host = &self.host;
        match (self.queue.front(), answer) {
            (Some(Expect::Info), Answer::Info { size, sha256 }) => {
                self.queue.pop_front();
                fed.events.push(Event::Info(Some((size, sha256))));
            }
            // The peer has not hashed the file yet: go on, and check what we can.
            (Some(Expect::Info), Answer::Error(ErrorCode::ReadError)) => {
                self.queue.pop_front();
                fed.events.push(Event::Info(None));
            }
            (
                Some(Expect::Pieces { count }),
                Answer::Pieces {
                    count: c,
                    piece_size,
                },
            ) => {
                if c != *count || piece_size != PIECE_SIZE {
                    return Err(format!(
                        "{host} sent a piece list of {c} pieces of {piece_size} bytes, not {count} of {PIECE_SIZE}"
                    ));
                }
                let need = usize::try_from(c)
                    .ok()
                    .and_then(|c| c.checked_mul(DIGEST_LEN))
                    .ok_or_else(|| format!("{host} sent an impossible piece list"))?;
                if need == 0 {
                    self.queue.pop_front();
                    fed.events.push(Event::List(Vec::new()));
                } else {
                    self.list = Some((need, Vec::with_capacity(need)));
                }
            }
            (Some(Expect::Range { len, .. }), Answer::Length(n)) => {
                if n != *len {
                    return Err(format!(
                        "{host} offered {n} bytes where {len} were expected"
                    ));
                }
                self.body = Some(n);
            }
            (Some(_), Answer::Error(code)) => {
                return Err(match code {
                    ErrorCode::NotFound => format!("{host} no longer publishes the file"),
                    ErrorCode::FileNotFound => format!("{host} no longer has the file on disk"),
                    ErrorCode::ReadError => format!("{host} could not read the file"),
                    c => format!("{host} answered ERROR {c}"),
                })
            }
            (_, other) => return Err(format!("{host} answered out of turn ({other:?})")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn link() -> Link {
        Link::new(ConnId::from_parts(1, 1), "erin".into(), "x".into(), None)
    }

    /// INFO, a 2-piece list, and a piece of 5 bytes, as one stream.
    fn stream() -> (Vec<u8>, Vec<u8>) {
        let list: Vec<u8> = [b"a".as_slice(), b"b"]
            .iter()
            .flat_map(Sha256::digest)
            .collect();
        let mut s = format!("INFO 5 {}\n", "ab".repeat(32)).into_bytes();
        s.extend_from_slice(format!("PIECES 2 {PIECE_SIZE}\n").as_bytes());
        s.extend_from_slice(&list);
        s.extend_from_slice(b"LENGTH 5\nhello");
        (s, list)
    }

    fn ask(l: &mut Link) {
        l.push(Expect::Info);
        l.push(Expect::Pieces { count: 2 });
        l.push(Expect::Range {
            piece: 0,
            len: 5,
            buf: Vec::new(),
            discard: false,
        });
    }

    #[test]
    fn answers_split_at_every_offset_give_the_same_events() {
        let (s, list) = stream();
        for cut in 0..=s.len() {
            let mut l = link();
            ask(&mut l);
            let mut events = Vec::new();
            let mut pending: Vec<u8> = Vec::new();
            for part in [&s[..cut], &s[cut..]] {
                pending.extend_from_slice(part);
                let fed = l.feed(&pending);
                pending.drain(..fed.used);
                events.extend(fed.events);
            }
            assert!(
                pending.is_empty(),
                "cut {cut}: {} bytes left",
                pending.len()
            );
            assert_eq!(events.len(), 3, "cut {cut}");
            assert!(matches!(&events[0], Event::Info(Some((5, _)))));
            assert!(matches!(&events[1], Event::List(got) if *got == list));
            assert!(matches!(&events[2], Event::Piece { piece: 0, buf, .. } if buf == b"hello"));
            assert_eq!(l.bytes, 5);
            assert!(l.pieces().is_empty());
        }
    }

    #[test]
    fn a_wrong_length_or_an_error_ends_the_host() {
        let mut l = link();
        ask(&mut l);
        let fed = l.feed(b"ERROR notfound\n");
        assert!(matches!(&fed.events[..], [Event::Fail(m)] if m.contains("no longer publishes")));
        let mut l = link();
        l.push(Expect::Range {
            piece: 3,
            len: 5,
            buf: Vec::new(),
            discard: false,
        });
        let fed = l.feed(b"LENGTH 6\nhello!");
        assert!(matches!(&fed.events[..], [Event::Fail(m)] if m.contains("6 bytes where 5")));
        assert_eq!(
            l.take_asked().len(),
            1,
            "the piece goes back to be asked elsewhere"
        );
        let mut l = link();
        l.push(Expect::Pieces { count: 2 });
        let fed = l.feed(b"PIECES 3 1048576\n");
        assert!(matches!(&fed.events[..], [Event::Fail(_)]));
    }
}
