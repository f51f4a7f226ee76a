//! The peer protocol codec (`docs/peer-protocol.md`): request lines and answer lines, both
//! directions. Pure: it never touches sockets or files, and the payload bytes
//! after `LENGTH` are the caller's business.

use std::fmt;

/// Longest request or answer line, without its newline.
pub const MAX_LINE: usize = 4096;

/// Files are verified in pieces of this size (the last one shorter); the
/// file's `root` is the SHA-256 of the concatenated piece digests.
pub const PIECE_SIZE: u64 = 1 << 20;

/// Bytes of one piece digest in a `PIECES` body.
pub const DIGEST_LEN: usize = 32;

/// How many pieces a file of `size` bytes has (0 for an empty file).
pub fn piece_count(size: u64) -> u64 {
    size.div_ceil(PIECE_SIZE)
}

/// What a fetcher asks of a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Get {
        name: String,
    },
    Info {
        name: String,
    },
    Range {
        offset: u64,
        length: u64,
        name: String,
    },
    /// The piece digests of a file (answered `PIECES <count> <piece_size>`
    /// and count × 32 bytes).
    Pieces {
        name: String,
    },
    Ping,
}

/// The error words of an `ERROR <word>` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Not published by this peer's user (or not a name at all).
    NotFound,
    /// Published, but gone from disk or changed since publishing.
    FileNotFound,
    /// Published, but could not be read (or its hash is not known yet).
    ReadError,
    /// A `RANGE` whose numbers are malformed or start past the end.
    BadRange,
    /// The request line exceeded [`MAX_LINE`]; the connection closes.
    TooLong,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "notfound",
            ErrorCode::FileNotFound => "filenotfound",
            ErrorCode::ReadError => "readerror",
            ErrorCode::BadRange => "badrange",
            ErrorCode::TooLong => "toolong",
        }
    }

    pub fn parse(word: &str) -> Option<ErrorCode> {
        Some(match word {
            "notfound" => ErrorCode::NotFound,
            "filenotfound" => ErrorCode::FileNotFound,
            "readerror" => ErrorCode::ReadError,
            "badrange" => ErrorCode::BadRange,
            "toolong" => ErrorCode::TooLong,
            _ => return None,
        })
    }

    /// The whole answer line, newline included.
    pub fn line(self) -> &'static [u8] {
        match self {
            ErrorCode::NotFound => b"ERROR notfound\n",
            ErrorCode::FileNotFound => b"ERROR filenotfound\n",
            ErrorCode::ReadError => b"ERROR readerror\n",
            ErrorCode::BadRange => b"ERROR badrange\n",
            ErrorCode::TooLong => b"ERROR toolong\n",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One answer line (the payload of `LENGTH` follows it on the wire).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Length(u64),
    Info {
        size: u64,
        sha256: String,
    },
    /// `count` digests of `DIGEST_LEN` bytes follow the line.
    Pieces {
        count: u64,
        piece_size: u64,
    },
    Pong,
    Error(ErrorCode),
}

impl Request {
    /// `PING\n` as a static line: a liveness probe sends it without
    /// allocating (the coordinator's admin probe).
    pub const PING_LINE: &'static [u8] = b"PING\n";
}

impl Answer {
    /// [`Answer::Pong`]'s line, static for the server's hot path.
    pub const PONG_LINE: &'static [u8] = b"PONG\n";
    /// `Answer::Length(0)`'s line: an empty range or an empty file.
    pub const EMPTY_LINE: &'static [u8] = b"LENGTH 0\n";
}

/// The outcome of decoding from the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<T> {
    /// No whole line yet and under the cap: read more.
    Partial,
    /// A frame and the bytes it used (newline included).
    Frame(T, usize),
    /// A whole line that does not parse: answer `code` (or, for a reply,
    /// give up on the peer). `used` bytes may be skipped to go on.
    Invalid(ErrorCode, usize),
    /// Over [`MAX_LINE`] with no newline in reach: nobody knows where the
    /// next line would start, so the connection must close.
    TooLong,
}

/// Decodes one request line from the front of `buf`.
///
/// A malformed `RANGE` is `Invalid(BadRange)`; an unknown verb or a name
/// that is not UTF-8 is `Invalid(NotFound)`: nothing of that name is served.
pub fn decode_request(buf: &[u8]) -> Decoded<Request> {
    let (line, used) = match next_line(buf) {
        Line::Partial => return Decoded::Partial,
        Line::TooLong => return Decoded::TooLong,
        Line::Complete(line, used) => (line, used),
    };
    match parse_request(line) {
        Ok(req) => Decoded::Frame(req, used),
        Err(code) => Decoded::Invalid(code, used),
    }
}

fn parse_request(line: &[u8]) -> Result<Request, ErrorCode> {
    if line == b"PING" {
        return Ok(Request::Ping);
    }
    if let Some(rest) = line.strip_prefix(b"GET ") {
        return Ok(Request::Get { name: name(rest)? });
    }
    if let Some(rest) = line.strip_prefix(b"INFO ") {
        return Ok(Request::Info { name: name(rest)? });
    }
    if let Some(rest) = line.strip_prefix(b"PIECES ") {
        return Ok(Request::Pieces { name: name(rest)? });
    }
    if let Some(rest) = line.strip_prefix(b"RANGE ") {
        let (offset, rest) = split_word(rest).ok_or(ErrorCode::BadRange)?;
        let (length, rest) = split_word(rest).ok_or(ErrorCode::BadRange)?;
        let offset = parse_u64(offset).ok_or(ErrorCode::BadRange)?;
        let length = parse_u64(length).ok_or(ErrorCode::BadRange)?;
        return Ok(Request::Range {
            offset,
            length,
            name: name(rest)?,
        });
    }
    Err(ErrorCode::NotFound)
}

/// The name is the rest of the line, spaces and all; an empty one names nothing.
fn name(raw: &[u8]) -> Result<String, ErrorCode> {
    match std::str::from_utf8(raw) {
        Ok(s) if !s.is_empty() => Ok(s.to_owned()),
        _ => Err(ErrorCode::NotFound),
    }
}

/// Splits at the first single space; the word before it must be non-empty.
fn split_word(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = s.iter().position(|&b| b == b' ')?;
    if i == 0 {
        return None;
    }
    Some((&s[..i], &s[i + 1..]))
}

/// Unsigned 64-bit decimal: digits only, no sign, no overflow.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

/// Decodes one answer line from the front of `buf` (client side).
///
/// Anything unexpected is `Invalid(ReadError, used)`: the peer is not
/// speaking this protocol and the caller should drop it.
pub fn decode_reply(buf: &[u8]) -> Decoded<Answer> {
    let (line, used) = match next_line(buf) {
        Line::Partial => return Decoded::Partial,
        Line::TooLong => return Decoded::TooLong,
        Line::Complete(line, used) => (line, used),
    };
    match parse_reply(line) {
        Some(r) => Decoded::Frame(r, used),
        None => Decoded::Invalid(ErrorCode::ReadError, used),
    }
}

fn parse_reply(line: &[u8]) -> Option<Answer> {
    if line == b"PONG" {
        return Some(Answer::Pong);
    }
    if let Some(rest) = line.strip_prefix(b"LENGTH ") {
        return parse_u64(rest).map(Answer::Length);
    }
    if let Some(rest) = line.strip_prefix(b"ERROR ") {
        return ErrorCode::parse(std::str::from_utf8(rest).ok()?).map(Answer::Error);
    }
    if let Some(rest) = line.strip_prefix(b"INFO ") {
        let (size, hash) = split_word(rest)?;
        let size = parse_u64(size)?;
        if hash.len() != 64 || !hash.iter().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let sha256 = std::str::from_utf8(hash).ok()?.to_ascii_lowercase();
        return Some(Answer::Info { size, sha256 });
    }
    if let Some(rest) = line.strip_prefix(b"PIECES ") {
        let (count, piece_size) = split_word(rest)?;
        return Some(Answer::Pieces {
            count: parse_u64(count)?,
            piece_size: parse_u64(piece_size)?,
        });
    }
    None
}

/// The request line for `req`, newline included. `None` when the name
/// cannot travel: it holds a newline, or the line would exceed the cap.
pub fn encode_request(req: &Request) -> Option<Vec<u8>> {
    let line = match req {
        Request::Ping => return Some(Request::PING_LINE.to_vec()),
        Request::Get { name } => format!("GET {name}"),
        Request::Info { name } => format!("INFO {name}"),
        Request::Pieces { name } => format!("PIECES {name}"),
        Request::Range {
            offset,
            length,
            name,
        } => format!("RANGE {offset} {length} {name}"),
    };
    if line.len() > MAX_LINE || line.contains('\n') || line.contains('\r') {
        return None;
    }
    let mut v = line.into_bytes();
    v.push(b'\n');
    Some(v)
}

/// The answer line for `reply`, newline included.
pub fn encode_reply(reply: &Answer) -> Vec<u8> {
    match reply {
        Answer::Length(n) => format!("LENGTH {n}\n").into_bytes(),
        Answer::Info { size, sha256 } => format!("INFO {size} {sha256}\n").into_bytes(),
        Answer::Pieces { count, piece_size } => {
            format!("PIECES {count} {piece_size}\n").into_bytes()
        }
        Answer::Pong => Answer::PONG_LINE.to_vec(),
        Answer::Error(code) => code.line().to_vec(),
    }
}

enum Line<'a> {
    Partial,
    Complete(&'a [u8], usize),
    TooLong,
}

/// A line ends at `\n`; a `\r` before it is dropped (telnet-friendly).
fn next_line(buf: &[u8]) -> Line<'_> {
    match reactor::line::next_line(buf, MAX_LINE) {
        reactor::line::Line::Partial => Line::Partial,
        reactor::line::Line::TooLong => Line::TooLong,
        reactor::line::Line::Complete(l, used) => Line::Complete(l, used),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(n: &str) -> Request {
        Request::Get { name: n.into() }
    }

    #[test]
    fn parses_each_request() {
        assert_eq!(
            decode_request(b"GET a file.txt\n"),
            Decoded::Frame(get("a file.txt"), 15)
        );
        assert_eq!(
            decode_request(b"INFO x\r\n"),
            Decoded::Frame(Request::Info { name: "x".into() }, 8)
        );
        assert_eq!(
            decode_request(b"RANGE 5 10 my file\n"),
            Decoded::Frame(
                Request::Range {
                    offset: 5,
                    length: 10,
                    name: "my file".into()
                },
                19
            )
        );
        assert_eq!(decode_request(b"PING\n"), Decoded::Frame(Request::Ping, 5));
        assert_eq!(decode_request(b"GET x"), Decoded::Partial);
    }

    #[test]
    fn a_path_is_just_a_name_the_server_will_not_find() {
        // The codec does not judge names; the catalog lookup (exact name
        // of a published file, which never holds '/') is what refuses it.
        assert_eq!(
            decode_request(b"GET ../../etc/passwd\n"),
            Decoded::Frame(get("../../etc/passwd"), 21)
        );
    }

    #[test]
    fn bad_ranges_are_badrange() {
        for line in [
            &b"RANGE 5 x name\n"[..],
            b"RANGE -1 5 name\n",
            b"RANGE +1 5 name\n",
            b"RANGE 1 5\n",
            b"RANGE 1  5 name\n",
            b"RANGE  1 5 name\n",
            b"RANGE 18446744073709551616 1 name\n",
            b"RANGE 1 99999999999999999999 name\n",
            b"RANGE 1 2\n",
        ] {
            assert!(
                matches!(decode_request(line), Decoded::Invalid(ErrorCode::BadRange, n) if n == line.len()),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        assert!(matches!(
            decode_request(b"RANGE 5 x name\n"),
            Decoded::Invalid(ErrorCode::BadRange, 15)
        ));
        assert_eq!(
            decode_request(b"RANGE 18446744073709551615 0 n\n"),
            Decoded::Frame(
                Request::Range {
                    offset: u64::MAX,
                    length: 0,
                    name: "n".into()
                },
                31
            )
        );
    }

    #[test]
    fn unknown_verbs_and_empty_names_find_nothing() {
        for line in [&b"FETCH x\n"[..], b"GET \n", b"get x\n", b"GET\n", b"\n"] {
            assert!(
                matches!(decode_request(line), Decoded::Invalid(ErrorCode::NotFound, n) if n == line.len()),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        assert!(matches!(
            decode_request(b"GET \xff\xfe\n"),
            Decoded::Invalid(ErrorCode::NotFound, 7)
        ));
    }

    #[test]
    fn request_line_cap() {
        let mut ok = b"GET ".to_vec();
        ok.extend(vec![b'a'; MAX_LINE - 4]);
        ok.push(b'\n');
        assert!(matches!(decode_request(&ok), Decoded::Frame(_, _)));
        let mut long = b"GET ".to_vec();
        long.extend(vec![b'a'; MAX_LINE]);
        assert_eq!(decode_request(&long), Decoded::TooLong);
        long.push(b'\n');
        assert_eq!(decode_request(&long), Decoded::TooLong);
        assert_eq!(decode_reply(&long), Decoded::TooLong);
    }

    #[test]
    fn parses_replies() {
        let h = "ab".repeat(32);
        assert_eq!(
            decode_reply(b"LENGTH 42\n"),
            Decoded::Frame(Answer::Length(42), 10)
        );
        assert_eq!(
            decode_reply(format!("INFO 7 {}\n", h.to_uppercase()).as_bytes()),
            Decoded::Frame(
                Answer::Info {
                    size: 7,
                    sha256: h.clone()
                },
                72
            )
        );
        assert_eq!(decode_reply(b"PONG\n"), Decoded::Frame(Answer::Pong, 5));
        assert_eq!(
            decode_reply(b"ERROR filenotfound\n"),
            Decoded::Frame(Answer::Error(ErrorCode::FileNotFound), 19)
        );
        for bad in [
            &b"LENGTH -1\n"[..],
            b"LENGTH\n",
            b"ERROR what\n",
            b"INFO 7 abc\n",
            b"HELLO\n",
        ] {
            assert!(matches!(
                decode_reply(bad),
                Decoded::Invalid(ErrorCode::ReadError, _)
            ));
        }
    }

    #[test]
    fn encode_then_decode_round_trips() {
        let reqs = [
            get("x y"),
            Request::Info { name: "z".into() },
            Request::Range {
                offset: 1,
                length: u64::MAX,
                name: " lead".into(),
            },
            Request::Pieces {
                name: "big file.iso".into(),
            },
            Request::Ping,
        ];
        for r in reqs {
            let wire = encode_request(&r).unwrap();
            assert_eq!(decode_request(&wire), Decoded::Frame(r, wire.len()));
        }
        assert_eq!(encode_request(&get("a\nb")), None);
        assert_eq!(encode_request(&get(&"x".repeat(MAX_LINE))), None);
        let replies = [
            Answer::Length(0),
            Answer::Info {
                size: 9,
                sha256: "0".repeat(64),
            },
            Answer::Pieces {
                count: 3,
                piece_size: PIECE_SIZE,
            },
            Answer::Pong,
            Answer::Error(ErrorCode::TooLong),
        ];
        for r in replies {
            let wire = encode_reply(&r);
            assert_eq!(decode_reply(&wire), Decoded::Frame(r, wire.len()));
        }
    }

    #[test]
    fn piece_counts_round_up_and_an_empty_file_has_none() {
        assert_eq!(piece_count(0), 0);
        assert_eq!(piece_count(1), 1);
        assert_eq!(piece_count(PIECE_SIZE), 1);
        assert_eq!(piece_count(PIECE_SIZE + 1), 2);
        assert_eq!(
            decode_reply(b"PIECES 2\n"),
            Decoded::Invalid(ErrorCode::ReadError, 9)
        );
    }

    /// Feeds `input` in two pieces and collects every outcome, skipping
    /// invalid lines as a server would.
    fn collect_requests(parts: &[&[u8]]) -> Vec<Result<Request, ErrorCode>> {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for p in parts {
            buf.extend_from_slice(p);
            loop {
                match decode_request(&buf) {
                    Decoded::Partial => break,
                    Decoded::Frame(r, used) => {
                        out.push(Ok(r));
                        buf.drain(..used);
                    }
                    Decoded::Invalid(c, used) => {
                        out.push(Err(c));
                        buf.drain(..used);
                    }
                    Decoded::TooLong => {
                        out.push(Err(ErrorCode::TooLong));
                        return out;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn same_requests_whatever_the_split() {
        let input = b"GET a b\nPING\r\nRANGE 1 x n\nINFO q\nRANGE 0 3 r s\nBOGUS\n";
        let whole = collect_requests(&[input.as_slice()]);
        assert_eq!(whole.len(), 6);
        for cut in 0..=input.len() {
            let (a, b) = input.split_at(cut);
            assert_eq!(collect_requests(&[a, b]), whole, "split at {cut}");
        }
    }

    #[test]
    fn same_replies_whatever_the_split() {
        let input = format!(
            "LENGTH 3\nINFO 10 {}\nPONG\nERROR notfound\nERROR nope\n",
            "f".repeat(64)
        );
        let input = input.as_bytes();
        let run = |parts: &[&[u8]]| {
            let mut buf = Vec::new();
            let mut out = Vec::new();
            for p in parts {
                buf.extend_from_slice(p);
                loop {
                    match decode_reply(&buf) {
                        Decoded::Partial => break,
                        Decoded::Frame(r, used) => {
                            out.push(Ok(r));
                            buf.drain(..used);
                        }
                        Decoded::Invalid(c, used) => {
                            out.push(Err(c));
                            buf.drain(..used);
                        }
                        Decoded::TooLong => return out,
                    }
                }
            }
            out
        };
        let whole = run(&[input]);
        assert_eq!(whole.len(), 5);
        for cut in 0..=input.len() {
            let (a, b) = input.split_at(cut);
            assert_eq!(run(&[a, b]), whole, "split at {cut}");
        }
    }

    #[test]
    fn static_lines_are_the_encoders_own() {
        assert_eq!(encode_reply(&Answer::Pong), Answer::PONG_LINE);
        assert_eq!(encode_reply(&Answer::Length(0)), Answer::EMPTY_LINE);
        assert_eq!(
            encode_request(&Request::Ping).as_deref(),
            Some(Request::PING_LINE)
        );
        assert_eq!(
            decode_request(Request::PING_LINE),
            Decoded::Frame(Request::Ping, Request::PING_LINE.len())
        );
    }
}
