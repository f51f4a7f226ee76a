//! The newline-framed codec: a frame is the bytes before `\n` (a trailing
//! `\r` dropped). Pure: no I/O.

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
    match memchr(b'\n', window) {
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
        None if buf.len() > max => Line::TooLong,
        None => Line::Partial,
    }
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

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
