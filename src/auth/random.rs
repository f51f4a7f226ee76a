//! Random bytes from the kernel (getrandom(2)) for salts, secrets and generated passwords;
//! it must never fall back to a weaker source.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::io;

/// Fill `buf` from the kernel CSPRNG; retries on EINTR and short reads.
pub fn fill(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: the pointer and length describe the writable tail of `buf`.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        done += n as usize;
    }
    Ok(())
}

/// `n` fresh random bytes.
pub fn bytes(n: usize) -> io::Result<Vec<u8>> {
    let mut v = vec![0u8; n];
    fill(&mut v)?;
    Ok(v)
}

/// `n_bytes` of randomness as URL-safe base64 without padding: safe to paste into a
/// shell, a URL or a `.env` file.
pub fn token_string(n_bytes: usize) -> io::Result<String> {
    Ok(URL_SAFE_NO_PAD.encode(bytes(n_bytes)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_large_buffers_and_differs_between_calls() {
        let a = bytes(1 << 20).unwrap();
        let b = bytes(1 << 20).unwrap();
        assert_eq!(a.len(), 1 << 20);
        assert_ne!(a, b);
        // A megabyte of real randomness has every byte value.
        let mut seen = [false; 256];
        a.iter().for_each(|&x| seen[x as usize] = true);
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn token_string_is_url_safe() {
        let t = token_string(12).unwrap();
        assert_eq!(t.len(), 16);
        assert!(t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(t, token_string(12).unwrap());
    }

    #[test]
    fn empty_buffer_is_fine() {
        fill(&mut []).unwrap();
    }
}
