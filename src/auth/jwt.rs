//! HS256 JSON Web Tokens signed and checked by hand (hmac + sha2 + base64); it accepts no
//! other algorithm and does no I/O.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

/// Longest token we will look at; anything longer is refused before decoding or hashing.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The fixed header of every token we sign.
const HEADER_JSON: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// What a p2pshare token says: who (`sub`), with which role, issued and expiring when
/// (Unix seconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: String,
    pub iat: u64,
    pub exp: u64,
}

/// Why a token was refused. Every variant means "401" to an HTTP caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtError {
    Malformed,
    BadAlgorithm,
    BadSignature,
    Expired,
    MissingClaim(&'static str),
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtError::Malformed => f.write_str("The token is malformed"),
            JwtError::BadAlgorithm => f.write_str("The token's algorithm is not HS256"),
            JwtError::BadSignature => f.write_str("The token's signature is invalid"),
            JwtError::Expired => f.write_str("The token has expired"),
            JwtError::MissingClaim(c) => {
                write!(f, "The token lacks a valid '{c}' claim")
            }
        }
    }
}

impl std::error::Error for JwtError {}

fn keyed(secret: &[u8]) -> HmacSha256 {
    match HmacSha256::new_from_slice(secret) {
        Ok(m) => m,
        // HMAC hashes over-long keys and pads short ones, so every length is accepted.
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

/// The signed payload: the claims plus a random `jti`, so that one token
/// can be revoked without touching the others of the same user.
#[derive(Serialize)]
struct Payload<'a> {
    #[serde(flatten)]
    claims: &'a Claims,
    jti: String,
}

/// A fresh token id: 16 random bytes. Should the kernel refuse randomness,
/// the time in nanoseconds and a counter still make it unique per process
/// run; it names a token, it guards nothing.
fn new_jti() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    match super::random::token_string(16) {
        Ok(s) => s,
        Err(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            format!("t{nanos}-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
        }
    }
}

/// Sign `claims` with `secret` as `header.payload.signature`, adding a random
/// `jti` claim.
pub fn sign(secret: &[u8], claims: &Claims) -> String {
    sign_identified(secret, claims).0
}

/// [`sign`], also returning the token's id as [`verify_with_id`] reports it
/// (`j:<jti>`), so the issuer can list and revoke it later.
pub fn sign_identified(secret: &[u8], claims: &Claims) -> (String, String) {
    let jti = new_jti();
    // Serialising strings and integers cannot fail.
    let payload = serde_json::to_vec(&Payload {
        claims,
        jti: jti.clone(),
    })
    .unwrap_or_default();
    let mut token = String::with_capacity(64 + payload.len() * 4 / 3 + 43);
    URL_SAFE_NO_PAD.encode_string(HEADER_JSON, &mut token);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
    let mut mac = keyed(secret);
    mac.update(token.as_bytes());
    let sig = mac.finalize().into_bytes();
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(sig, &mut token);
    (token, format!("j:{jti}"))
}

/// Check the header's algorithm and the signature; return the decoded payload object
/// without looking at any claim.
pub fn verify_signature(secret: &[u8], token: &str) -> Result<serde_json::Value, JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h64), Some(p64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };

    let header = URL_SAFE_NO_PAD
        .decode(h64)
        .map_err(|_| JwtError::Malformed)?;
    let header: serde_json::Value =
        serde_json::from_slice(&header).map_err(|_| JwtError::Malformed)?;
    if !header.is_object() {
        return Err(JwtError::Malformed);
    }
    // Exactly "HS256": "none", other HMAC sizes and case variants are all refused, so
    // the algorithm can never be chosen by the token's author.
    if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
        return Err(JwtError::BadAlgorithm);
    }

    let sig = URL_SAFE_NO_PAD
        .decode(s64)
        .map_err(|_| JwtError::BadSignature)?;
    let mut mac = keyed(secret);
    mac.update(h64.as_bytes());
    mac.update(b".");
    mac.update(p64.as_bytes());
    // verify_slice compares in constant time.
    mac.verify_slice(&sig).map_err(|_| JwtError::BadSignature)?;

    let payload = URL_SAFE_NO_PAD
        .decode(p64)
        .map_err(|_| JwtError::Malformed)?;
    let payload: serde_json::Value =
        serde_json::from_slice(&payload).map_err(|_| JwtError::Malformed)?;
    if !payload.is_object() {
        return Err(JwtError::Malformed);
    }
    Ok(payload)
}

/// A non-negative finite number of seconds, integer or float.
fn seconds(v: &serde_json::Value) -> Option<f64> {
    let n = v.as_f64()?;
    (n.is_finite() && n >= 0.0).then_some(n)
}

/// Full check: algorithm, signature, the four claims, and expiry against `now` (Unix
/// seconds). A token without `exp` is refused: tokens must not live forever.
pub fn verify(secret: &[u8], token: &str, now: u64) -> Result<Claims, JwtError> {
    verify_with_id(secret, token, now).map(|(c, _)| c)
}

/// [`verify`], also returning the token's id for revocation: its `jti` claim
/// (prefixed `j:`), or for a token signed without one, its signature
/// (prefixed `s:`), which is just as unique.
pub fn verify_with_id(secret: &[u8], token: &str, now: u64) -> Result<(Claims, String), JwtError> {
    let payload = verify_signature(secret, token)?;
    let id = match payload.get("jti").and_then(|v| v.as_str()) {
        Some(j) if !j.is_empty() && j.len() <= 128 => format!("j:{j}"),
        _ => format!("s:{}", token.rsplit('.').next().unwrap_or_default()),
    };
    let claims = check_claims(&payload, now)?;
    Ok((claims, id))
}

fn check_claims(payload: &serde_json::Value, now: u64) -> Result<Claims, JwtError> {
    let exp = payload
        .get("exp")
        .and_then(seconds)
        .ok_or(JwtError::MissingClaim("exp"))?;
    let sub = payload
        .get("sub")
        .and_then(|v| v.as_str())
        .ok_or(JwtError::MissingClaim("sub"))?;
    let role = payload
        .get("role")
        .and_then(|v| v.as_str())
        .ok_or(JwtError::MissingClaim("role"))?;
    let iat = payload
        .get("iat")
        .and_then(seconds)
        .ok_or(JwtError::MissingClaim("iat"))?;
    // Integer claims are compared and returned exactly: past 2^53 an f64 rounds
    // them (found by fuzz/jwt_decode).
    let whole = |c: &str| payload.get(c).and_then(|v| v.as_u64());
    let expired = match whole("exp") {
        Some(e) => e <= now,
        None => exp <= now as f64,
    };
    if expired {
        return Err(JwtError::Expired);
    }
    Ok(Claims {
        sub: sub.to_owned(),
        role: role.to_owned(),
        iat: whole("iat").unwrap_or(iat as u64),
        exp: whole("exp").unwrap_or(exp as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT_IO: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    const JWT_IO_SECRET: &[u8] = b"your-256-bit-secret";
    const SECRET: &[u8] = b"test secret of reasonable length";

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "alice".into(),
            role: "user".into(),
            iat: 1_000,
            exp,
        }
    }

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    /// Build a token with arbitrary header and payload, correctly signed with SECRET.
    fn forge(header: &str, payload: &str) -> String {
        let signing_input = format!("{}.{}", b64(header), b64(payload));
        let mut mac = keyed(SECRET);
        mac.update(signing_input.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{sig}")
    }

    #[test]
    fn jwt_io_example_signature_checks_but_full_verify_wants_exp() {
        let payload = verify_signature(JWT_IO_SECRET, JWT_IO).unwrap();
        assert_eq!(payload["sub"], "1234567890");
        assert_eq!(payload["name"], "John Doe");
        assert_eq!(
            verify(JWT_IO_SECRET, JWT_IO, 1_516_239_022),
            Err(JwtError::MissingClaim("exp"))
        );
        assert_eq!(
            verify_signature(b"wrong", JWT_IO),
            Err(JwtError::BadSignature)
        );
    }

    #[test]
    fn round_trip() {
        let c = claims(5_000);
        let t = sign(SECRET, &c);
        assert!(t.starts_with(&b64(HEADER_JSON)));
        assert_eq!(verify(SECRET, &t, 4_999), Ok(c));
    }

    #[test]
    fn every_signed_token_has_its_own_id() {
        let c = claims(5_000);
        let (a, b) = (sign(SECRET, &c), sign(SECRET, &c));
        assert_ne!(a, b);
        let (ca, ia) = verify_with_id(SECRET, &a, 0).unwrap();
        let (_, ib) = verify_with_id(SECRET, &b, 0).unwrap();
        assert_eq!(ca, c);
        assert!(ia.starts_with("j:") && ia.len() > 10, "{ia}");
        assert_ne!(ia, ib);
        // A token without jti is named by its signature.
        let old = forge(
            HEADER_JSON,
            r#"{"sub":"a","role":"user","iat":1,"exp":9999}"#,
        );
        let (_, id) = verify_with_id(SECRET, &old, 0).unwrap();
        assert_eq!(id, format!("s:{}", old.rsplit('.').next().unwrap()));
    }

    #[test]
    fn wrong_secret_is_refused() {
        let t = sign(SECRET, &claims(5_000));
        assert_eq!(verify(b"other", &t, 0), Err(JwtError::BadSignature));
    }

    #[test]
    fn expired_at_and_after_exp() {
        let t = sign(SECRET, &claims(5_000));
        assert_eq!(verify(SECRET, &t, 5_000), Err(JwtError::Expired));
        assert_eq!(verify(SECRET, &t, 9_000), Err(JwtError::Expired));
    }

    #[test]
    fn tampered_payload_is_refused() {
        let t = sign(SECRET, &claims(5_000));
        let parts: Vec<&str> = t.split('.').collect();
        let evil = b64(r#"{"sub":"alice","role":"admin","iat":1000,"exp":5000}"#);
        let forged = format!("{}.{}.{}", parts[0], evil, parts[2]);
        assert_eq!(verify(SECRET, &forged, 0), Err(JwtError::BadSignature));
    }

    #[test]
    fn tampered_signature_is_refused() {
        let mut t = sign(SECRET, &claims(5_000));
        let last = t.pop().unwrap();
        t.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(verify(SECRET, &t, 0), Err(JwtError::BadSignature));
        let no_sig = t.rsplit_once('.').unwrap().0.to_owned() + ".";
        assert_eq!(verify(SECRET, &no_sig, 0), Err(JwtError::BadSignature));
    }

    #[test]
    fn other_algorithms_are_refused() {
        let p = r#"{"sub":"alice","role":"admin","iat":1000,"exp":5000}"#;
        for h in [
            r#"{"alg":"none","typ":"JWT"}"#,
            r#"{"alg":"HS512","typ":"JWT"}"#,
            r#"{"alg":"hs256","typ":"JWT"}"#,
            r#"{"typ":"JWT"}"#,
            r#"{"alg":256}"#,
        ] {
            assert_eq!(verify(SECRET, &forge(h, p), 0), Err(JwtError::BadAlgorithm));
        }
        // The classic "none" attack: unsigned token with an empty signature.
        let none = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(p));
        assert_eq!(verify(SECRET, &none, 0), Err(JwtError::BadAlgorithm));
    }

    #[test]
    fn claims_must_be_present_and_typed() {
        let h = HEADER_JSON;
        let cases = [
            (r#"{"sub":"a","role":"user","iat":1}"#, "exp"),
            (r#"{"sub":"a","role":"user","iat":1,"exp":"9999"}"#, "exp"),
            (r#"{"role":"user","iat":1,"exp":9999}"#, "sub"),
            (r#"{"sub":7,"role":"user","iat":1,"exp":9999}"#, "sub"),
            (r#"{"sub":"a","iat":1,"exp":9999}"#, "role"),
            (r#"{"sub":"a","role":"user","exp":9999}"#, "iat"),
            (r#"{"sub":"a","role":"user","iat":-1,"exp":9999}"#, "iat"),
        ];
        for (p, missing) in cases {
            assert_eq!(
                verify(SECRET, &forge(h, p), 0),
                Err(JwtError::MissingClaim(missing)),
                "{p}"
            );
        }
        let float = forge(h, r#"{"sub":"a","role":"user","iat":1.5,"exp":9999.9}"#);
        let c = verify(SECRET, &float, 9_999).unwrap();
        assert_eq!((c.iat, c.exp), (1, 9_999));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let good = sign(SECRET, &claims(5_000));
        let cases = [
            String::new(),
            "a.b".into(),
            format!("{good}.x"),
            "!!!.b.c".into(),
            format!("{}.{}.x", b64("not json"), b64("{}")),
            format!("{}.{}.x", b64("[1]"), b64("{}")),
            forge(HEADER_JSON, "not json"),
            forge(HEADER_JSON, "[1,2]"),
            "a".repeat(MAX_TOKEN_LEN + 1),
        ];
        for t in cases {
            assert_eq!(verify(SECRET, &t, 0), Err(JwtError::Malformed), "{t}");
        }
    }

    /// fuzz/regressions/jwt_decode: claims past 2^53 came back rounded, and a
    /// token could read as expired up to ~1000 s before its `exp`.
    #[test]
    fn large_integer_claims_are_exact() {
        let c = Claims {
            sub: String::new(),
            role: String::new(),
            iat: 3_330_745_076_463_697_919,
            exp: 5_707_586_207_104_975_176,
        };
        let t = sign(SECRET, &c);
        assert_eq!(verify(SECRET, &t, c.exp - 1), Ok(c.clone()));
        assert_eq!(verify(SECRET, &t, c.exp), Err(JwtError::Expired));
        let max = Claims { exp: u64::MAX, ..c };
        let t = sign(SECRET, &max);
        assert_eq!(verify(SECRET, &t, u64::MAX - 1), Ok(max.clone()));
    }

    #[test]
    fn errors_read_as_sentences() {
        assert_eq!(JwtError::Expired.to_string(), "The token has expired");
        assert_eq!(
            JwtError::MissingClaim("exp").to_string(),
            "The token lacks a valid 'exp' claim"
        );
    }
}
