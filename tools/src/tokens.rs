//! Where registry tokens come from: minted locally from the shared secret (HS256 by hand),
//! obtained per user through the server API, or none for an `--allow-anonymous`
//! coordinator. It opens no registry connections.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

/// The password every bench user gets through the API (they are throwaway accounts).
pub const BENCH_PASSWORD: &str = "bench-password-not-secret";

#[derive(Debug, Clone)]
pub enum Auth {
    /// Sign tokens with the coordinator's JWT_SECRET_KEY.
    Mint(Vec<u8>),
    /// Register (or log in) each user through `POST <url>/api/user/register`.
    Api(String),
    Anonymous,
}

/// An HS256 JWT for `sub` with `role`, valid for `ttl_s` seconds from now.
pub fn mint(secret: &[u8], sub: &str, role: &str, ttl_s: u64) -> String {
    let iat = crate::unix_now() as u64;
    let claims = json!({"sub": sub, "role": role, "iat": iat, "exp": iat + ttl_s});
    let mut t = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    t.push('.');
    t.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        // HMAC takes keys of every length; nothing to sign with otherwise.
        Err(_) => return t,
    };
    mac.update(t.as_bytes());
    t.push('.');
    t.push_str(&URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()));
    t
}

impl Auth {
    /// Tokens for `names` (None each when anonymous), in order. Through the API this runs
    /// `threads` users at a time, since the server hashes each password slowly.
    pub fn tokens(&self, names: &[String], threads: usize) -> Result<Vec<Option<String>>, String> {
        match self {
            Auth::Anonymous => Ok(vec![None; names.len()]),
            Auth::Mint(secret) => Ok(names
                .iter()
                .map(|n| Some(mint(secret, n, "user", 3600)))
                .collect()),
            Auth::Api(url) => {
                let threads = threads.clamp(1, 64);
                let chunk = names.len().div_ceil(threads).max(1);
                let results: Vec<Result<Vec<Option<String>>, String>> = std::thread::scope(|s| {
                    let handles: Vec<_> = names
                        .chunks(chunk)
                        .map(|part| {
                            s.spawn(move || {
                                let mut c = crate::http::Client::new(url)?;
                                part.iter()
                                    .map(|n| api_token(&mut c, n).map(Some))
                                    .collect()
                            })
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| {
                            h.join()
                                .unwrap_or_else(|_| Err("token thread panicked".into()))
                        })
                        .collect()
                });
                let mut out = Vec::with_capacity(names.len());
                for r in results {
                    out.extend(r?);
                }
                Ok(out)
            }
        }
    }
}

/// Register `name` (or log in if it exists) and return its token.
pub fn api_token(c: &mut crate::http::Client, name: &str) -> Result<String, String> {
    let body = json!({"username": name, "password": BENCH_PASSWORD, "display_name": name});
    let (st, v) = call_paced(c, "/api/user/register", &body)?;
    let v = if st == 409 {
        match call_paced(c, "/api/user/login", &body)? {
            (200..=299, v) => v,
            (st, v) => {
                let msg = v["error"].as_str().unwrap_or("(no error message)");
                return Err(format!("login {name}: HTTP {st}: {msg}"));
            }
        }
    } else if (200..300).contains(&st) {
        v
    } else {
        let msg = v["error"].as_str().unwrap_or("(no error message)");
        return Err(format!("register {name}: HTTP {st}: {msg}"));
    };
    v["token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("register {name}: no token in the answer"))
}

/// The coordinator limits register and login per address (a burst of 20,
/// then one a second): past it, wait and try again rather than fail the run.
fn call_paced(
    c: &mut crate::http::Client,
    path: &str,
    body: &serde_json::Value,
) -> Result<(u16, serde_json::Value), String> {
    for _ in 0..600 {
        let (st, v) = c.call("POST", path, Some(body), None)?;
        if st != 429 {
            return Ok((st, v));
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    Err(format!("{path}: still rate-limited after 10 minutes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_token_has_the_fixed_header_and_a_verifiable_signature() {
        let t = mint(b"s3cret", "bench-x-1", "user", 3600);
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(
            URL_SAFE_NO_PAD.decode(parts[0]).unwrap(),
            br#"{"alg":"HS256","typ":"JWT"}"#
        );
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["sub"], "bench-x-1");
        assert_eq!(claims["role"], "user");
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            3600
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        assert!(mac
            .verify_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
            .is_ok());
        let other = mint(b"other", "bench-x-1", "user", 3600);
        assert_ne!(other.rsplit('.').next(), t.rsplit('.').next());
    }

    #[test]
    fn anonymous_and_minted_give_one_token_per_name() {
        let names = vec!["a".to_string(), "b".to_string()];
        assert_eq!(Auth::Anonymous.tokens(&names, 2).unwrap(), vec![None, None]);
        let t = Auth::Mint(b"k".to_vec()).tokens(&names, 2).unwrap();
        assert!(t.iter().all(|x| x.is_some()));
    }
}
