//! Token verification (`p2pshare::auth::jwt`) on arbitrary strings with a
//! fixed secret, and on tokens signed from fuzzer-chosen claims.
//!
//! Invariants: no panic; a token is accepted only if its third part is
//! exactly the base64url (no padding) HMAC-SHA256 of its first two parts under
//! our secret, i.e. only if we signed it (computed here independently of the
//! verifier), its header says `HS256` and, for `verify`, it is not expired;
//! an accepted token with any one character changed is refused; the same
//! token under another secret is refused; claims we sign verify to exactly
//! those claims until they expire (or, past `MAX_TOKEN_LEN`, are refused).
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use libfuzzer_sys::arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use p2pshare::auth::jwt::{sign, verify, verify_signature, Claims, JwtError, MAX_TOKEN_LEN};
use sha2::Sha256;

/// The secret the seed tokens in corpus/jwt_decode were signed with.
const SECRET: &[u8] = b"p2pshare fuzz secret, 32 bytes!!";
const OTHER: &[u8] = b"p2pshare fuzz secret, 32 bytes!?";

/// Whether `token` is `h.p.s` with `s` our signature of `h.p`.
fn signed_by_us(token: &str) -> bool {
    let Some((input, sig)) = token.rsplit_once('.') else {
        return false;
    };
    if input.matches('.').count() != 1 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(input.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()) == sig
}

fn check_accepted(token: &str, pick: usize) {
    assert!(
        signed_by_us(token),
        "accepted a token we did not sign: {token:?}"
    );
    let h64 = token.split('.').next().unwrap();
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h64).unwrap()).unwrap();
    assert_eq!(header["alg"], "HS256");
    assert_eq!(
        verify_signature(OTHER, token),
        Err(JwtError::BadSignature),
        "accepted under another secret"
    );
    // Change one character (position and replacement chosen by the input).
    let chars: Vec<char> = token.chars().collect();
    let at = pick % chars.len();
    const ALPHABET: &[u8] = b"ABCabc019-_.=+/ ";
    let mut with = char::from(ALPHABET[(pick / chars.len().max(1)) % ALPHABET.len()]);
    if with == chars[at] {
        with = if with == 'A' { 'B' } else { 'A' };
    }
    let mut evil: String = chars.iter().collect();
    evil.replace_range(
        evil.char_indices()
            .nth(at)
            .map(|(i, c)| i..i + c.len_utf8())
            .unwrap(),
        with.encode_utf8(&mut [0; 4]),
    );
    assert!(
        verify_signature(SECRET, &evil).is_err(),
        "accepted a tampered token {evil:?} (from {token:?})"
    );
}

fuzz_target!(|data: &[u8]| {
    let pick = data.iter().fold(0usize, |h, &b| {
        h.wrapping_mul(31).wrapping_add(usize::from(b))
    });

    // 1. The input as a token.
    let token = String::from_utf8_lossy(data);
    if let Ok(payload) = verify_signature(SECRET, &token) {
        assert!(payload.is_object());
        check_accepted(&token, pick);
    }
    for now in [0, 1_700_000_000, u64::MAX] {
        if verify(SECRET, &token, now).is_ok() {
            check_accepted(&token, pick);
        }
    }

    // 2. Claims from the input, signed, must come back intact while valid.
    let mut u = Unstructured::new(data);
    let Ok(claims) = (|| -> libfuzzer_sys::arbitrary::Result<Claims> {
        Ok(Claims {
            sub: String::arbitrary(&mut u)?,
            role: String::arbitrary(&mut u)?,
            iat: u64::arbitrary(&mut u)?,
            exp: u64::arbitrary(&mut u)?,
        })
    })() else {
        return;
    };
    let t = sign(SECRET, &claims);
    assert!(signed_by_us(&t));
    if t.len() > MAX_TOKEN_LEN {
        // Claims of kilobytes (usernames are 3-32 characters) sign into a
        // token the verifier refuses unread: refused, never accepted.
        assert_eq!(verify(SECRET, &t, 0), Err(JwtError::Malformed));
        return;
    }
    check_accepted(&t, pick);
    if claims.exp > 0 {
        assert_eq!(
            verify(SECRET, &t, claims.exp - 1),
            Ok(claims.clone()),
            "a token we signed does not verify to its claims: {t}"
        );
    }
    assert_eq!(verify(SECRET, &t, claims.exp), Err(JwtError::Expired));
    assert_eq!(verify(OTHER, &t, 0), Err(JwtError::BadSignature));
});
