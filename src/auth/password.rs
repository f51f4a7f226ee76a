//! Password hashing: PBKDF2-HMAC-SHA256 written over `hmac`, in a self-describing stored
//! form. It is deliberately slow, so it must never run on an event-loop thread.

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// OWASP's 2023 recommendation for PBKDF2-HMAC-SHA256.
pub const DEFAULT_ITERATIONS: u32 = 600_000;

const SCHEME: &str = "pbkdf2-sha256";
const SALT_LEN: usize = 16;
const KEY_LEN: usize = 32;
/// Refuse stored hashes that would take minutes to check (a damaged or hostile file).
const MAX_ITERATIONS: u32 = 100_000_000;

/// PBKDF2 (RFC 8018 §5.2) with HMAC-SHA256, filling `out` of any length.
pub fn pbkdf2_hmac_sha256(password: &[u8], salt: &[u8], iterations: u32, out: &mut [u8]) {
    // Keying HMAC hashes the password into the inner/outer pads; do it once and clone
    // the keyed state for every step instead of re-keying 600,000 times.
    let keyed = match HmacSha256::new_from_slice(password) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    for (i, block) in out.chunks_mut(32).enumerate() {
        let mut mac = keyed.clone();
        mac.update(salt);
        mac.update(&(i as u32 + 1).to_be_bytes());
        let mut u = mac.finalize().into_bytes();
        let mut t = u;
        for _ in 1..iterations {
            let mut mac = keyed.clone();
            mac.update(&u);
            u = mac.finalize().into_bytes();
            t.iter_mut().zip(u.iter()).for_each(|(a, b)| *a ^= b);
        }
        block.copy_from_slice(&t[..block.len()]);
    }
}

/// Hash with a fresh 16-byte salt:
/// `pbkdf2-sha256$<iterations>$<b64 salt>$<b64 key>` (standard base64, no padding).
pub fn hash_password(password: &str, iterations: u32) -> std::io::Result<String> {
    let iterations = iterations.max(1);
    let salt = super::random::bytes(SALT_LEN)?;
    let mut key = [0u8; KEY_LEN];
    pbkdf2_hmac_sha256(password.as_bytes(), &salt, iterations, &mut key);
    Ok(format!(
        "{SCHEME}${iterations}${}${}",
        STANDARD_NO_PAD.encode(&salt),
        STANDARD_NO_PAD.encode(key)
    ))
}

/// Check `password` against a stored hash. `Err` means the stored form itself is unusable
/// (not a wrong password).
pub fn verify_password(password: &str, stored: &str) -> Result<bool, String> {
    let mut parts = stored.split('$');
    let (Some(scheme), Some(iters), Some(salt), Some(key), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(
            "stored password hash does not have the form scheme$iterations$salt$key".into(),
        );
    };
    if scheme != SCHEME {
        return Err(format!(
            "stored password hash uses unknown scheme '{scheme}'"
        ));
    }
    let iterations: u32 = iters
        .parse()
        .ok()
        .filter(|&n| (1..=MAX_ITERATIONS).contains(&n))
        .ok_or_else(|| format!("stored password hash has a bad iteration count '{iters}'"))?;
    let salt = STANDARD_NO_PAD
        .decode(salt)
        .map_err(|e| format!("stored password hash has a bad salt: {e}"))?;
    let key = STANDARD_NO_PAD
        .decode(key)
        .map_err(|e| format!("stored password hash has a bad key: {e}"))?;
    if key.is_empty() || key.len() > 64 {
        return Err(format!(
            "stored password hash has a key of {} bytes",
            key.len()
        ));
    }
    let mut got = vec![0u8; key.len()];
    pbkdf2_hmac_sha256(password.as_bytes(), &salt, iterations, &mut got);
    Ok(constant_time_eq(&got, &key))
}

/// Equal-length comparison whose time does not depend on where the bytes differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box stops the optimiser from turning the fold into an early-exit compare.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::util::hex;

    fn spaced(s: &str) -> String {
        s.split_whitespace().collect()
    }

    #[test]
    fn rfc7914_vector_1() {
        let mut out = [0u8; 64];
        pbkdf2_hmac_sha256(b"passwd", b"salt", 1, &mut out);
        assert_eq!(
            hex(&out),
            spaced(
                "55 ac 04 6e 56 e3 08 9f ec 16 91 c2 25 44 b6 05 f9 41 85 21 6d de 04 65 e6 8b 9d 57 c2 0d ac bc
                 49 ca 9c cc f1 79 b6 45 99 16 64 b3 9d 77 ef 31 7c 71 b8 45 b1 e3 0b d5 09 11 20 41 d3 a1 97 83"
            )
        );
    }

    #[test]
    fn rfc7914_vector_2() {
        let mut out = [0u8; 64];
        pbkdf2_hmac_sha256(b"Password", b"NaCl", 80_000, &mut out);
        assert_eq!(
            hex(&out),
            spaced(
                "4d dc d8 f6 0b 98 be 21 83 0c ee 5e f2 27 01 f9 64 1a 44 18 d0 4c 04 14 ae ff 08 87 6b 34 ab 56
                 a1 d4 25 a1 22 58 33 54 9a db 84 1b 51 c9 b3 17 6a 27 2b de bb a1 d0 78 47 8f 62 b3 97 f3 3c 8d"
            )
        );
    }

    #[test]
    fn partial_last_block_is_a_prefix_of_the_full_block() {
        let mut long = [0u8; 64];
        let mut short = [0u8; 40];
        pbkdf2_hmac_sha256(b"pw", b"salt", 3, &mut long);
        pbkdf2_hmac_sha256(b"pw", b"salt", 3, &mut short);
        assert_eq!(long[..40], short[..]);
    }

    #[test]
    fn hash_round_trip_and_wrong_password() {
        let h = hash_password("correct horse", 10).unwrap();
        assert!(h.starts_with("pbkdf2-sha256$10$"), "{h}");
        assert_eq!(verify_password("correct horse", &h), Ok(true));
        assert_eq!(verify_password("correct hors", &h), Ok(false));
        assert_eq!(verify_password("", &h), Ok(false));
        // A fresh salt each time.
        assert_ne!(h, hash_password("correct horse", 10).unwrap());
    }

    #[test]
    fn malformed_stored_hashes_are_errors() {
        let good = hash_password("pw", 2).unwrap();
        let key = good.rsplit('$').next().unwrap();
        for bad in [
            "",
            "pbkdf2-sha256$2$c2FsdA",
            &format!("bcrypt$2$c2FsdA${key}"),
            &format!("pbkdf2-sha256$0$c2FsdA${key}"),
            &format!("pbkdf2-sha256$x$c2FsdA${key}"),
            &format!("pbkdf2-sha256$4000000000$c2FsdA${key}"),
            &format!("pbkdf2-sha256$2$!!$${key}"),
            "pbkdf2-sha256$2$c2FsdA$",
            &format!("{good}$extra"),
        ] {
            assert!(verify_password("pw", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
