//! JSON writing without serde: the coordinator builds replies per request on
//! its hot path, so values are appended straight into the output buffer.

use reactor::bytes::{any_of, below, eq};

use super::FileMeta;

/// Appends `bytes` as lower-case hex, as digests and ids are written
/// everywhere (the application's `util::hex` is this, as a `String`).
pub fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 15)]);
    }
}

/// Whether any byte of `b` must be escaped in a JSON string, eight bytes at
/// a time: names, hosts and digests almost never need escaping.
fn needs_escape(b: &[u8]) -> bool {
    any_of(b, |w| {
        below(w, 0x20) | eq(w, b'"') | eq(w, b'\\') | eq(w, 0x7f)
    })
}

/// Appends `s` as a JSON string literal.
pub fn push_json_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    if !needs_escape(bytes) {
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0..=0x1f | 0x7f => None,
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        match esc {
            Some(e) => out.extend_from_slice(e),
            None => out.extend_from_slice(format!("\\u{:04x}", b).as_bytes()),
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Appends a number the way JSON wants it (integral floats without `.0` noise
/// is not required; serde_json's formatting is used for exactness).
pub fn push_f64(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        if v.fract() == 0.0 && v.abs() < 9.0e15 {
            if v < 0.0 {
                out.push(b'-');
            }
            push_u64(out, v.abs() as u64);
        } else {
            let _ = serde_json::to_writer(&mut *out, &v);
        }
    } else {
        out.extend_from_slice(b"null");
    }
}

/// "00" to "99", for writing two digits per division.
const PAIRS: [u8; 200] = {
    let mut t = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        t[2 * i] = b'0' + (i / 10) as u8;
        t[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    t
};

/// Appends an unsigned integer in decimal, without allocating (replies are
/// built per request on the hot path), two digits per division.
pub fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    while v >= 100 {
        let r = (v % 100) as usize;
        v /= 100;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[2 * r..2 * r + 2]);
    }
    if v >= 10 {
        i -= 2;
        let r = v as usize;
        buf[i..i + 2].copy_from_slice(&PAIRS[2 * r..2 * r + 2]);
    } else {
        i -= 1;
        buf[i] = b'0' + v as u8;
    }
    out.extend_from_slice(&buf[i..]);
}

/// `{"status":"ERROR","reason":"..."}\n`, the reply to a line that never
/// became a request (see [`super::Reply::Error`]).
pub fn error_line(reason: &str) -> Vec<u8> {
    super::Reply::Error(reason.into()).line()
}

/// Appends `{"name":{meta},...}` (a host's files, in the order given).
pub fn push_files<'a, M: AsRef<FileMeta> + 'a>(
    out: &mut Vec<u8>,
    files: impl Iterator<Item = (&'a str, M)>,
) {
    out.push(b'{');
    for (i, (name, m)) in files.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_json_str(out, name);
        out.push(b':');
        push_meta(out, m.as_ref());
    }
    out.push(b'}');
}

/// Appends one file's metadata object, optional fields only when present.
pub fn push_meta(out: &mut Vec<u8>, m: &FileMeta) {
    out.extend_from_slice(b"{\"size\":");
    push_u64(out, m.size);
    out.extend_from_slice(b",\"modified\":");
    push_f64(out, m.modified);
    if let Some(p) = m.published_at {
        out.extend_from_slice(b",\"published_at\":");
        push_f64(out, p);
    }
    out.extend_from_slice(if m.is_published {
        b",\"is_published\":true"
    } else {
        b",\"is_published\":false"
    });
    if let Some(s) = &m.sha256 {
        out.extend_from_slice(b",\"sha256\":");
        push_json_str(out, s);
    }
    if let Some(r) = &m.root {
        out.extend_from_slice(b",\"root\":");
        push_json_str(out, r);
    }
    out.push(b'}');
}
