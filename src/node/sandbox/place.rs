//! Where a download is written: a folder beneath a granted root, reached and
//! created without following symlinks, and the file operations on it
//! (exclusive create, stat without following, unlink, rename without
//! replacing anything but a regular file).

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use super::fs::*;
use super::Root;

/// Where one download is written: a folder beneath a granted root (reached
/// without following symlinks) and a file name in it.
#[derive(Clone)]
pub struct Place {
    pub(super) root: Arc<Root>,
    /// Folders from the root's descriptor down to the file's folder.
    pub(super) dirs: Vec<OsString>,
    pub(super) name: OsString,
    /// The same as one path (symlinks of existing folders resolved).
    pub path: PathBuf,
}

impl std::fmt::Debug for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Place({})", self.path.display())
    }
}

impl Place {
    pub fn name(&self) -> &OsStr {
        &self.name
    }

    /// `<name>.part`.
    pub fn part_name(&self) -> OsString {
        let mut s = self.name.clone();
        s.push(".part");
        s
    }

    /// The file's folder, walked to from the root one component at a time
    /// with O_NOFOLLOW; with `create`, missing folders are made with
    /// mkdirat on the way (never anywhere a symlink points).
    pub fn open_dir(&self, create: bool) -> io::Result<Dir> {
        let mut cur: Option<OwnedFd> = None;
        for part in &self.dirs {
            let at = cur
                .as_ref()
                .map_or(self.root.fd.as_raw_fd(), |d| d.as_raw_fd());
            let c = cstr(part)?;
            let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
            let next = match openat(at, &c, flags, 0) {
                Err(e) if create && e.kind() == io::ErrorKind::NotFound => {
                    // SAFETY: a valid name relative to an open directory.
                    let rc = unsafe { libc::mkdirat(at, c.as_ptr(), 0o755) };
                    if rc != 0 {
                        let e = io::Error::last_os_error();
                        if e.kind() != io::ErrorKind::AlreadyExists {
                            return Err(e);
                        }
                    }
                    openat(at, &c, flags, 0)?
                }
                other => other?,
            };
            cur = Some(next);
        }
        let fd = match cur {
            Some(fd) => fd,
            None => openat(
                self.root.fd.as_raw_fd(),
                c".",
                libc::O_RDONLY | libc::O_DIRECTORY,
                0,
            )?,
        };
        Ok(Dir { fd })
    }
}

/// What is at a name in a folder, not following a symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Regular { dev: u64, ino: u64, size: u64 },
    Other,
}

/// An open folder a download writes into; every call is relative to it.
pub struct Dir {
    fd: OwnedFd,
}

impl Dir {
    fn c(name: &OsStr) -> io::Result<CString> {
        cstr(name)
    }

    /// fstatat with AT_SYMLINK_NOFOLLOW: None when nothing is there.
    pub fn entry(&self, name: &OsStr) -> io::Result<Option<Entry>> {
        let c = Self::c(name)?;
        // SAFETY: plain data filled by the kernel.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a valid name relative to an open directory, a buffer of the right type.
        let rc = unsafe {
            libc::fstatat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::NotFound {
                return Ok(None);
            }
            return Err(e);
        }
        Ok(Some(if st.st_mode & libc::S_IFMT == libc::S_IFREG {
            Entry::Regular {
                dev: st.st_dev,
                ino: st.st_ino,
                size: st.st_size as u64,
            }
        } else {
            Entry::Other
        }))
    }

    /// Creates `name` exclusively, never following a symlink
    /// (O_CREAT | O_EXCL | O_NOFOLLOW): a planted file or link makes it fail.
    pub fn create_new(&self, name: &OsStr) -> io::Result<File> {
        let c = Self::c(name)?;
        let flags = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
        openat(self.fd.as_raw_fd(), &c, flags, 0o644).map(File::from)
    }

    /// Opens an existing regular file for reading and writing, never
    /// following a symlink (ELOOP then).
    pub fn open_existing(&self, name: &OsStr) -> io::Result<File> {
        let c = Self::c(name)?;
        let f = File::from(openat(
            self.fd.as_raw_fd(),
            &c,
            libc::O_RDWR | libc::O_NOFOLLOW | libc::O_NONBLOCK,
            0,
        )?);
        if !f.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Ok(f)
    }

    /// Opens an existing regular file read-only, not following a symlink.
    pub fn open_read(&self, name: &OsStr) -> io::Result<File> {
        let c = Self::c(name)?;
        let f = File::from(openat(
            self.fd.as_raw_fd(),
            &c,
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
            0,
        )?);
        if !f.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Ok(f)
    }

    /// unlinkat: removes the name itself (a symlink, not what it points to).
    pub fn unlink(&self, name: &OsStr) -> io::Result<()> {
        let c = Self::c(name)?;
        // SAFETY: a valid name relative to an open directory.
        if unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// renameat2 within this folder. Without `replace`, RENAME_NOREPLACE
    /// (EEXIST when `to` exists); with it, only a regular file at `to` may
    /// be replaced (a symlink or folder there: EEXIST / EISDIR). rename
    /// never follows a symlink at `to`: at worst the link itself would go.
    pub fn rename(&self, from: &OsStr, to: &OsStr, replace: bool) -> io::Result<()> {
        let (a, b) = (Self::c(from)?, Self::c(to)?);
        if replace {
            if let Some(Entry::Other) = self.entry(to)? {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "something other than a regular file is there",
                ));
            }
        }
        let flags = if replace { 0 } else { libc::RENAME_NOREPLACE };
        let fd = self.fd.as_raw_fd();
        // SAFETY: two valid names relative to an open directory.
        let rc =
            unsafe { libc::syscall(libc::SYS_renameat2, fd, a.as_ptr(), fd, b.as_ptr(), flags) };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            // File systems without RENAME_NOREPLACE: link(2) fails on an
            // existing name just the same (and never follows `from`).
            Some(libc::EINVAL) | Some(libc::ENOSYS) if !replace => {
                // SAFETY: as above.
                let rc = unsafe { libc::linkat(fd, a.as_ptr(), fd, b.as_ptr(), 0) };
                if rc != 0 {
                    return Err(io::Error::last_os_error());
                }
                self.unlink(from)
            }
            _ => Err(e),
        }
    }

    pub fn sync(&self) -> io::Result<()> {
        // SAFETY: a valid descriptor.
        if unsafe { libc::fsync(self.fd.as_raw_fd()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
