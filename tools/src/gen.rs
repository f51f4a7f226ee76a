//! Deterministic test files: SplitMix64 bytes written in 1 MiB blocks, hashed with SHA-256
//! on the way out. The same size and seed always give the same bytes.

use crate::prng::SplitMix64;
use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};
use std::path::Path;

const BLOCK: usize = 1 << 20;

pub fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Write `size` bytes for (`seed`, `size`) to `path`; return the SHA-256 hex.
pub fn write_file(path: &Path, size: u64, seed: u64) -> io::Result<String> {
    let mut rng = SplitMix64::new(seed ^ size.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut f = io::BufWriter::with_capacity(BLOCK, std::fs::File::create(path)?);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; BLOCK];
    let mut left = size;
    while left > 0 {
        let n = left.min(BLOCK as u64) as usize;
        rng.fill(&mut buf[..n]);
        h.update(&buf[..n]);
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(hex(&h.finalize()))
}

/// SHA-256 hex of a file's bytes.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; BLOCK];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes_and_hash_matches_content() {
        let d = std::env::temp_dir().join(format!("gen-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let (a, b, c) = (d.join("a"), d.join("b"), d.join("c"));
        let size = (BLOCK + 12345) as u64;
        let ha = write_file(&a, size, 7).unwrap();
        let hb = write_file(&b, size, 7).unwrap();
        let hc = write_file(&c, size, 8).unwrap();
        assert_eq!(ha, hb);
        assert_ne!(ha, hc);
        assert_eq!(std::fs::metadata(&a).unwrap().len(), size);
        assert_eq!(sha256_file(&a).unwrap(), ha);
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        let empty = d.join("e");
        assert_eq!(
            write_file(&empty, 0, 1).unwrap(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
