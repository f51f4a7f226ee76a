//! The newline-framed codec: a frame is the bytes before `\n` (a trailing
//! `\r` dropped). Pure: no I/O.

use crate::bytes;

#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// No full line yet and still under the cap: read more.
    Partial,
    /// One line and the bytes it used (including the newline).
    Complete(&'a [u8], usize),
    /// The line (newline or not yet) exceeds `max` bytes.
    TooLong,
}

/// Finds the next line in `buf`, whose content may be at most `max` bytes.
pub fn next_line(buf: &[u8], max: usize) -> Line<'_> {
    let window = &buf[..buf.len().min(max + 2)];
    match find_byte(b'\n', window) {
        Some(i) => {
            let mut line = &buf[..i];
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            if line.len() > max {
                Line::TooLong
            } else {
                Line::Complete(line, i + 1)
            }
        }
        // `max` bytes and a `\r` may still be a line whose `\n` has not
        // arrived yet (found by fuzz/registry_line).
        None if buf.len() > max && !(buf.len() == max + 1 && buf[max] == b'\r') => Line::TooLong,
        None => Line::Partial,
    }
}

/// The first `needle` in `hay`, eight bytes at a time (a request line is
/// scanned once per request; byte by byte this was 5% of the registry's
/// loop under pipelined load). The bench tools frame answers with it too.
pub fn find_byte(needle: u8, hay: &[u8]) -> Option<usize> {
    bytes::first_of(hay, |w| bytes::eq(w, needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_at_a_time_search_finds_the_first_newline_anywhere() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for len in 0..80 {
            for _ in 0..200 {
                let hay: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        // Mostly bytes near '\n' (0x0a), and 0x80s, to catch carries.
                        [b'\n', 0x0b, 0x09, 0x8a, 0x80, b'a', 0x00, 0xff][(x % 8) as usize]
                    })
                    .collect();
                let want = hay.iter().position(|&b| b == b'\n');
                assert_eq!(find_byte(b'\n', &hay), want, "{hay:?}");
            }
        }
    }

    #[test]
    fn frames_lines_and_caps_length() {
        assert_eq!(next_line(b"abc", 10), Line::Partial);
        assert_eq!(next_line(b"abc\ndef", 10), Line::Complete(b"abc", 4));
        assert_eq!(next_line(b"abc\r\n", 10), Line::Complete(b"abc", 5));
        assert_eq!(next_line(b"0123456789A", 10), Line::TooLong);
        assert_eq!(next_line(b"0123456789A\n", 10), Line::TooLong);
        assert_eq!(
            next_line(b"0123456789\n", 10),
            Line::Complete(b"0123456789", 11)
        );
    }

    #[test]
    fn same_frames_whatever_the_split() {
        let input = b"{\"a\":1}\n\r\n{\"b\":2}\r\nlast\n";
        let whole = collect(&[input.as_slice()]);
        for cut in 0..=input.len() {
            let (a, b) = input.split_at(cut);
            assert_eq!(collect(&[a, b]), whole, "split at {cut}");
        }
    }

    /// fuzz/regressions/registry_line: a line of exactly the cap ending in
    /// `\r\n`, cut between the `\r` and the `\n`, was refused as too long.
    #[test]
    fn a_line_at_the_cap_split_inside_its_crlf() {
        assert_eq!(next_line(b"0123456789\r", 10), Line::Partial);
        assert_eq!(next_line(b"0123456789x", 10), Line::TooLong);
        assert_eq!(next_line(b"0123456789\rx", 10), Line::TooLong);
        let input = b"\x00123456789\r\nabc\n{nope\n";
        let whole = collect(&[input.as_slice()]);
        assert_eq!(whole.len(), 3);
        let (a, b) = input.split_at(11);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for p in [a, b] {
            buf.extend_from_slice(p);
            loop {
                match next_line(&buf, 10) {
                    Line::Complete(l, used) => {
                        out.push(l.to_vec());
                        buf.drain(..used);
                    }
                    Line::Partial => break,
                    Line::TooLong => panic!("refused as too long after {} bytes", buf.len()),
                }
            }
        }
        assert_eq!(
            out,
            vec![
                b"\x00123456789".to_vec(),
                b"abc".to_vec(),
                b"{nope".to_vec()
            ]
        );
    }

    fn collect(parts: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for p in parts {
            buf.extend_from_slice(p);
            while let Line::Complete(l, used) = next_line(&buf, 64) {
                out.push(l.to_vec());
                buf.drain(..used);
            }
        }
        out
    }
}
