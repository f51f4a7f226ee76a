//! Piece digests (`docs/peer-protocol.md`, `PIECES`): a file is verified in
//! pieces of `PIECE_SIZE` bytes; its `root` is the SHA-256 of the
//! concatenated piece digests. Hashing a file computes both the whole-file
//! SHA-256 and the piece digests in one read pass ([`FileHasher`]); the
//! digests are kept content-addressed in `<data>/pieces/<root>` so the peer
//! server can answer `PIECES` from a memory map and a restart does not hash
//! an unchanged file again. A download checks pieces against a root the same
//! way and keeps its whole-file hash resumable ([`Sha256State`]).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::digest::generic_array::GenericArray;
use sha2::{Digest, Sha256};

pub use crate::proto::peer::{piece_count, DIGEST_LEN, PIECE_SIZE};
use crate::util::hex;

/// The folder of piece files under the node's data directory.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("pieces")
}

/// Where the digests of the content with this `root` (lower-case hex) are kept.
/// `None` for anything that is not 64 hex digits, so a root from the network
/// can never name another path.
pub fn path(data_dir: &Path, root: &str) -> Option<PathBuf> {
    let ok = root.len() == 64 && root.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| dir(data_dir).join(root.to_ascii_lowercase()))
}

/// The root of a digest list.
pub fn root_of(digests: &[u8]) -> String {
    hex(&Sha256::digest(digests))
}

/// Writes the digest list for `root` (whole, via a temporary file and a
/// rename, so a reader never sees half a list). Blocking: call from a worker.
pub fn store(data_dir: &Path, root: &str, digests: &[u8]) -> io::Result<PathBuf> {
    let final_path = path(data_dir, root)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "root is not a digest"))?;
    if let Ok(m) = fs::metadata(&final_path) {
        if m.len() == digests.len() as u64 {
            return Ok(final_path);
        }
    }
    fs::create_dir_all(dir(data_dir))?;
    // Unique per call: two workers may store the same content at once (two
    // copies of one file hashed together), and must not share a temporary.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let tmp = final_path.with_extension(format!("tmp{}-{n}", std::process::id()));
    let written = fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(digests).and_then(|_| f.sync_data()))
        .and_then(|_| fs::rename(&tmp, &final_path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(final_path)
}

/// Reads the digest list for `root` and checks it against the root.
/// Blocking: call from a worker.
pub fn load(data_dir: &Path, root: &str) -> io::Result<Vec<u8>> {
    let p = path(data_dir, root)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "root is not a digest"))?;
    let bytes = fs::read(p)?;
    if bytes.len() % DIGEST_LEN != 0 || root_of(&bytes) != root.to_ascii_lowercase() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "piece list does not match its root",
        ));
    }
    Ok(bytes)
}

/// Feeds a file's bytes in order and yields its SHA-256, its piece digests
/// and its root: two hashers fed from the same buffer, one read pass.
pub struct FileHasher {
    whole: Sha256,
    piece: Sha256,
    in_piece: u64,
    digests: Vec<u8>,
}

/// What [`FileHasher::finish`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashed {
    pub sha256: String,
    pub root: String,
    /// `piece_count(size)` digests of `DIGEST_LEN` bytes.
    pub digests: Vec<u8>,
}

impl Default for FileHasher {
    fn default() -> Self {
        FileHasher::new()
    }
}

impl FileHasher {
    pub fn new() -> FileHasher {
        FileHasher {
            whole: Sha256::new(),
            piece: Sha256::new(),
            in_piece: 0,
            digests: Vec::new(),
        }
    }

    pub fn update(&mut self, mut bytes: &[u8]) {
        self.whole.update(bytes);
        while !bytes.is_empty() {
            let room = (PIECE_SIZE - self.in_piece) as usize;
            let n = room.min(bytes.len());
            self.piece.update(&bytes[..n]);
            self.in_piece += n as u64;
            bytes = &bytes[n..];
            if self.in_piece == PIECE_SIZE {
                let d = std::mem::take(&mut self.piece).finalize();
                self.digests.extend_from_slice(&d);
                self.in_piece = 0;
            }
        }
    }

    pub fn finish(mut self) -> Hashed {
        if self.in_piece > 0 {
            let d = self.piece.finalize();
            self.digests.extend_from_slice(&d);
        }
        Hashed {
            sha256: hex(&self.whole.finalize()),
            root: root_of(&self.digests),
            digests: self.digests,
        }
    }
}

/// SHA-256 whose state can be saved and restored between whole 64-byte
/// blocks (piece boundaries are such), so a download's whole-file hash
/// survives a pause or a restart without reading the file again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sha256State {
    h: [u32; 8],
    /// Bytes fed so far.
    len: u64,
    /// A partial block (only the last piece leaves one).
    tail: Vec<u8>,
}

/// Whole 64-byte blocks seen as the block type `compress256` takes, without
/// copying them (copying each block was twice the cost of hashing it).
fn as_blocks(bytes: &[u8]) -> &[GenericArray<u8, sha2::digest::consts::U64>] {
    debug_assert_eq!(bytes.len() % 64, 0);
    // SAFETY: `GenericArray<u8, U64>` is layout-compatible with `[u8; 64]`
    // (size 64, alignment 1, no padding), and `bytes` holds exactly
    // `len / 64` such arrays; the lifetime is that of `bytes`.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast(), bytes.len() / 64) }
}

const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

impl Default for Sha256State {
    fn default() -> Self {
        Sha256State::new()
    }
}

impl Sha256State {
    pub fn new() -> Sha256State {
        Sha256State {
            h: H0,
            len: 0,
            tail: Vec::with_capacity(64),
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn update(&mut self, mut bytes: &[u8]) {
        self.len += bytes.len() as u64;
        if !self.tail.is_empty() {
            let n = (64 - self.tail.len()).min(bytes.len());
            self.tail.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.tail.len() < 64 {
                return;
            }
            let block = GenericArray::clone_from_slice(&self.tail);
            sha2::compress256(&mut self.h, &[block]);
            self.tail.clear();
        }
        let whole = bytes.len() / 64 * 64;
        if whole > 0 {
            sha2::compress256(&mut self.h, as_blocks(&bytes[..whole]));
        }
        self.tail.extend_from_slice(&bytes[whole..]);
    }

    /// The digest (lower-case hex) of everything fed.
    pub fn finish(&self) -> String {
        let mut h = self.h;
        let mut last = self.tail.clone();
        last.push(0x80);
        while last.len() % 64 != 56 {
            last.push(0);
        }
        last.extend_from_slice(&(self.len.wrapping_mul(8)).to_be_bytes());
        let blocks: Vec<GenericArray<u8, _>> = last
            .chunks_exact(64)
            .map(GenericArray::clone_from_slice)
            .collect();
        sha2::compress256(&mut h, &blocks);
        let mut out = [0u8; 32];
        for (i, w) in h.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
        }
        hex(&out)
    }

    /// The saved form: `len` then the eight state words, hex; `None` while a
    /// partial block is held (save only at piece boundaries).
    pub fn save(&self) -> Option<String> {
        if !self.tail.is_empty() {
            return None;
        }
        let mut s = format!("{:016x}", self.len);
        for w in self.h {
            s.push_str(&format!("{w:08x}"));
        }
        Some(s)
    }

    pub fn restore(saved: &str) -> Option<Sha256State> {
        if saved.len() != 16 + 64 || !saved.is_ascii() {
            return None;
        }
        let len = u64::from_str_radix(&saved[..16], 16).ok()?;
        if len % 64 != 0 {
            return None;
        }
        let mut h = [0u32; 8];
        for (i, w) in h.iter_mut().enumerate() {
            let at = 16 + i * 8;
            *w = u32::from_str_radix(&saved[at..at + 8], 16).ok()?;
        }
        Some(Sha256State {
            h,
            len,
            tail: Vec::with_capacity(64),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn the_resumable_hash_matches_sha2_at_every_length_and_split() {
        for n in [0, 1, 55, 56, 63, 64, 65, 127, 128, 1000, 4096 + 3] {
            let data = bytes(n);
            let want = hex(&Sha256::digest(&data));
            for split in [0, n / 3, n / 2, n] {
                let mut s = Sha256State::new();
                s.update(&data[..split]);
                s.update(&data[split..]);
                assert_eq!(s.finish(), want, "n={n} split={split}");
            }
        }
    }

    #[test]
    fn a_saved_state_restores_at_a_block_boundary_only() {
        let data = bytes(64 * 40 + 17);
        let mut s = Sha256State::new();
        s.update(&data[..64 * 20]);
        let saved = s.save().unwrap();
        let mut r = Sha256State::restore(&saved).unwrap();
        r.update(&data[64 * 20..]);
        assert_eq!(r.finish(), hex(&Sha256::digest(&data)));
        s.update(&data[64 * 20..64 * 20 + 5]);
        assert_eq!(s.save(), None);
        assert_eq!(Sha256State::restore("zz"), None);
    }

    #[test]
    fn one_pass_gives_the_file_hash_the_pieces_and_their_root() {
        let n = 2 * PIECE_SIZE as usize + 12345;
        let data = bytes(n);
        let mut h = FileHasher::new();
        for chunk in data.chunks(300_000) {
            h.update(chunk);
        }
        let out = h.finish();
        assert_eq!(out.sha256, hex(&Sha256::digest(&data)));
        let mut want = Vec::new();
        for p in data.chunks(PIECE_SIZE as usize) {
            want.extend_from_slice(&Sha256::digest(p));
        }
        assert_eq!(out.digests, want);
        assert_eq!(out.digests.len(), 3 * DIGEST_LEN);
        assert_eq!(out.root, root_of(&want));
        let empty = FileHasher::new().finish();
        assert!(empty.digests.is_empty());
        assert_eq!(empty.root, root_of(&[]));
    }

    #[test]
    fn a_stored_list_loads_only_under_its_own_root() {
        let dir = tempfile::tempdir().unwrap();
        let digests = bytes(DIGEST_LEN * 3);
        let root = root_of(&digests);
        store(dir.path(), &root, &digests).unwrap();
        assert_eq!(load(dir.path(), &root).unwrap(), digests);
        assert!(path(dir.path(), "../../etc/passwd").is_none());
        let other = root_of(b"x");
        fs::copy(
            path(dir.path(), &root).unwrap(),
            path(dir.path(), &other).unwrap(),
        )
        .unwrap();
        assert!(load(dir.path(), &other).is_err());
    }
}
