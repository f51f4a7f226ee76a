//! `PIECES <name>` (`docs/peer-protocol.md`): a published file's piece
//! digests, sent from a memory map of its entry in the node's piece store
//! (`src/node/catalog/pieces.rs`) as file data is sent from the file's map.

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use memmap2::Mmap;
use reactor::{ConnId, Ctx};

use super::{check_on_disk, lookup, map_file, mtime_ns, PeerServer, PublishedFiles, State};
use crate::proto::peer::{self, Answer, ErrorCode};

impl PeerServer {
    /// `PIECES <name>`: the count line, then the digests straight from a
    /// memory map of the file's entry in the piece store, as file data is
    /// sent. The data file itself is checked as GET checks it (still the
    /// published file), but not mapped: only its digests travel. Not paced
    /// by `--max-upload-rate`: 32 bytes per MiB of file.
    pub(super) fn answer_pieces(
        &mut self,
        cx: &mut Ctx,
        id: ConnId,
        name: &str,
        catalog: &mut dyn PublishedFiles,
    ) {
        let f = match lookup(catalog, name) {
            Ok(f) => f,
            Err(code) => return cx.send_static(id, code.line()),
        };
        if let Err(code) = check_on_disk(&self.sandbox, catalog, &f) {
            return cx.send_static(id, code.line());
        }
        let Some(path) = f.pieces.as_ref() else {
            // Not hashed into pieces yet (or its digests could not be kept).
            return cx.send_static(id, ErrorCode::ReadError.line());
        };
        let count = peer::piece_count(f.size);
        let line = peer::encode_reply(&Answer::Pieces {
            count,
            piece_size: peer::PIECE_SIZE,
        });
        let want = count.saturating_mul(peer::DIGEST_LEN as u64);
        if want == 0 {
            return cx.send_vec(id, line);
        }
        let map = match self.digest_map(cx, path, want) {
            Ok(m) => m,
            Err(e) => {
                crate::log_warn!("cannot serve the piece digests of {:?}: {e}", f.name);
                return cx.send_static(id, ErrorCode::ReadError.line());
            }
        };
        cx.send_vec(id, line);
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        // `want` fits: the map covers it.
        cx.send_map(id, map, 0, want as usize, 256 * 1024);
        cx.notify_drained(id);
        c.state = State::Sending;
    }

    /// The map of a digest list of `want` bytes, shared as file maps are.
    /// Opened without following a symlink; a list of another length is not
    /// this file's (a torn or foreign entry) and is refused.
    fn digest_map(
        &mut self,
        cx: &mut Ctx,
        path: &std::path::Path,
        want: u64,
    ) -> std::io::Result<Arc<Mmap>> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)?;
        let meta = file.metadata()?;
        if !meta.is_file() || meta.len() != want {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} holds {} bytes, not {want}", path.display(), meta.len()),
            ));
        }
        let key = (meta.dev(), meta.ino(), meta.len(), mtime_ns(&meta));
        if let Some(m) = self.maps.get(key, cx.now()) {
            return Ok(m);
        }
        let m = Arc::new(map_file(&file, want)?);
        self.maps.insert(key, m.clone(), cx.now());
        self.arm_sweep(cx);
        Ok(m)
    }
}
