//! Which paths a node's users may read and write, and opening them safely.
//! The operator grants folders (share roots, download roots); this module
//! owns the rules (under a root after every symlink is resolved, never the
//! node's data directory, nothing hidden unless allowed, no pseudo file
//! systems, regular files only) and the only ways the node opens a user's
//! files: beneath a descriptor of the root, never following a symlink, so a
//! symlink swapped in after a check cannot redirect a read or a write. It
//! keeps no per-user state and does no I/O of its own beyond the calls
//! made on it; callers decide whether a call may run on the loop.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A folder the operator granted, opened once at start: every later open
/// resolves beneath this descriptor, so renaming or replacing the folder's
/// path afterwards cannot move what the node reaches.
pub struct Root {
    pub path: PathBuf,
    fd: OwnedFd,
}

impl Root {
    fn open(path: &Path) -> io::Result<Root> {
        let c = cstr(path.as_os_str())?;
        // SAFETY: a valid NUL-terminated path; the descriptor is owned below.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Root {
            path: path.to_path_buf(),
            // SAFETY: a fresh descriptor nobody else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }
}

/// Who the file is: the node serves and hashes a tracked file only while
/// the descriptor it opens shows the same device and inode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Identity {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    /// Unix seconds (fractional).
    pub modified: f64,
}

impl Identity {
    pub fn of(m: &Metadata) -> Identity {
        Identity {
            dev: m.dev(),
            ino: m.ino(),
            size: m.len(),
            modified: super::peer_server::mtime_secs(m),
        }
    }
}

/// A file accepted by [`Sandbox::check_add`]: its path with every symlink
/// resolved, and what it was when checked.
#[derive(Debug)]
pub struct Accepted {
    pub real: PathBuf,
    pub id: Identity,
}

/// An HTTP status and a sentence for the user.
pub type Refusal = (u16, String);

pub struct Sandbox {
    share: Vec<Arc<Root>>,
    download: Vec<Arc<Root>>,
    /// The data directory (canonical); its `users/<u>/downloads` folders
    /// are the only part of it anyone may write into, and none is shared.
    data: Arc<Root>,
    hidden_ok: bool,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Sandbox(share: {}; download: {}; data: {})",
            list(&self.share),
            list(&self.download),
            self.data.path.display()
        )
    }
}

/// Pseudo file systems (statfs f_type): kernel state, not files. Their
/// "files" change on every read (rehashing forever) or expose the process
/// itself (`/proc/self/environ`). devtmpfs reports tmpfs's number; its
/// entries are device nodes, which the regular-file rule refuses.
const PSEUDO_FS: &[(u64, &str)] = &[
    (0x9fa0, "proc"),
    (0x6265_6572, "sysfs"),
    (0x1cd1, "devpts"),
    (0x0027_e0eb, "cgroup"),
    (0x6367_7270, "cgroup2"),
    (0x6462_6720, "debugfs"),
    (0x7472_6163, "tracefs"),
    (0x7363_6673, "securityfs"),
    (0x6265_6570, "configfs"),
    (0xcafe_4a11, "bpf"),
    (0x6165_676c, "pstore"),
    (0xde5e_81e4, "efivarfs"),
    (0xf97c_ff8c, "selinuxfs"),
    (0x4341_5d53, "smackfs"),
    (0x6573_5543, "fusectl"),
    (0x4249_4e4d, "binfmt_misc"),
    (0x1980_0202, "mqueue"),
    (0x6e73_6673, "nsfs"),
    (0x6759_6969, "rpc_pipefs"),
    (0x0187, "autofs"),
];

/// openat2(2) answered ENOSYS once: use the component walk from then on.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

fn cstr(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))
}

fn fd_from(rc: libc::c_long) -> io::Result<OwnedFd> {
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor returned by the kernel, owned from here.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as RawFd) })
}

fn openat(dir: RawFd, name: &CStr, flags: i32, mode: libc::mode_t) -> io::Result<OwnedFd> {
    loop {
        // SAFETY: a valid NUL-terminated name relative to an open directory.
        let rc = unsafe {
            libc::openat(
                dir,
                name.as_ptr(),
                flags | libc::O_CLOEXEC | libc::O_NOCTTY,
                mode,
            )
        };
        match fd_from(rc as libc::c_long) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Opens `rel` (plain components, no `.`/`..`) beneath `root`, following
/// no symlink at all: openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
/// RESOLVE_NO_MAGICLINKS. Where the kernel has no openat2 it walks the
/// components with O_NOFOLLOW, which gives the same guarantee (every
/// folder on the way and the file itself must not be a symlink), so no
/// check of `/proc/self/fd` is needed afterwards. A path with a symlink in
/// it fails with ELOOP (or ENOTDIR): the caller resolved symlinks before
/// checking the rules, so one appearing now is a swap.
fn open_beneath(root: &Root, rel: &Path, flags: i32) -> io::Result<OwnedFd> {
    let parts = plain_parts(rel)?;
    if parts.is_empty() {
        return openat(root.fd.as_raw_fd(), c".", flags, 0);
    }
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        let c = cstr(rel.as_os_str())?;
        // SAFETY: open_how is plain data; zero is "no flags" for every field.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        // openat2 refuses (EINVAL) flags that mean nothing with O_PATH.
        let all = if flags & libc::O_PATH != 0 {
            flags & (libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW)
        } else {
            flags | libc::O_NOCTTY
        };
        how.flags = (all | libc::O_CLOEXEC) as u64;
        how.resolve =
            libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
        for _ in 0..8 {
            // SAFETY: valid pointers to a NUL-terminated path and an
            // open_how of the size passed; the kernel only reads them.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_openat2,
                    root.fd.as_raw_fd(),
                    c.as_ptr(),
                    &how as *const libc::open_how,
                    std::mem::size_of::<libc::open_how>(),
                )
            };
            match fd_from(rc) {
                Ok(fd) => return Ok(fd),
                // A rename raced the lookup: the kernel asks us to try again.
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                    NO_OPENAT2.store(true, Ordering::Relaxed);
                    break;
                }
                // Some container filters refuse unknown calls with EPERM.
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => break,
                Err(e) => return Err(e),
            }
        }
    }
    let mut dir: Option<OwnedFd> = None;
    let last = parts.len() - 1;
    for (i, part) in parts.iter().enumerate() {
        let at = dir.as_ref().map_or(root.fd.as_raw_fd(), |d| d.as_raw_fd());
        let c = cstr(part)?;
        let next = if i == last {
            openat(at, &c, flags | libc::O_NOFOLLOW, 0)?
        } else {
            openat(
                at,
                &c,
                libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
            )?
        };
        dir = Some(next);
    }
    dir.ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
}

/// The components of a relative path, all plain names.
fn plain_parts(rel: &Path) -> io::Result<Vec<&OsStr>> {
    let mut out = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(n),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "only plain names below a root",
                ))
            }
        }
    }
    Ok(out)
}

/// The pseudo file system `fd` lives on, if any.
fn pseudo_fs(fd: RawFd) -> Option<&'static str> {
    // SAFETY: statfs is plain data filled by the kernel.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a buffer of the right type.
    if unsafe { libc::fstatfs(fd, &mut st) } != 0 {
        return None;
    }
    let kind = (st.f_type as u64) & 0xffff_ffff;
    PSEUDO_FS.iter().find(|(m, _)| *m == kind).map(|(_, n)| *n)
}

/// The first hidden component of `rel` (a name starting with `.`).
fn hidden_part(rel: &Path) -> Option<String> {
    rel.components().find_map(|c| match c {
        Component::Normal(n) if n.as_bytes().first() == Some(&b'.') => {
            Some(n.to_string_lossy().into_owned())
        }
        _ => None,
    })
}

fn list(roots: &[Arc<Root>]) -> String {
    roots
        .iter()
        .map(|r| r.path.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn canonical_root(flag: &str, p: &Path) -> Result<Arc<Root>, String> {
    let real = std::fs::canonicalize(p).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            format!("{flag} {}: no such folder", p.display())
        } else {
            format!("{flag} {}: {e}", p.display())
        }
    })?;
    if !real.is_dir() {
        return Err(format!("{flag} {}: not a folder", p.display()));
    }
    Root::open(&real)
        .map(Arc::new)
        .map_err(|e| format!("{flag} {}: cannot open it: {e}", p.display()))
}

/// The longest root that holds `path`, and the rest of the path below it.
fn beneath<'a>(roots: &'a [Arc<Root>], path: &Path) -> Option<(&'a Arc<Root>, PathBuf)> {
    roots
        .iter()
        .filter_map(|r| path.strip_prefix(&r.path).ok().map(|rel| (r, rel)))
        .max_by_key(|(r, _)| r.path.as_os_str().len())
        .map(|(r, rel)| (r, rel.to_path_buf()))
}

impl Sandbox {
    /// Canonicalises and opens the roots (a missing one is a start-up error
    /// naming its flag). `data_dir` must exist already.
    pub fn new(
        share_roots: &[PathBuf],
        download_roots: &[PathBuf],
        data_dir: &Path,
        hidden_ok: bool,
    ) -> Result<Sandbox, String> {
        let share = share_roots
            .iter()
            .map(|p| canonical_root("--share-root", p))
            .collect::<Result<Vec<_>, _>>()?;
        let download = download_roots
            .iter()
            .map(|p| canonical_root("--download-root", p))
            .collect::<Result<Vec<_>, _>>()?;
        let data = canonical_root("--data-dir", data_dir)?;
        Ok(Sandbox {
            share,
            download,
            data,
            hidden_ok,
        })
    }

    pub fn share_roots(&self) -> impl Iterator<Item = &Path> {
        self.share.iter().map(|r| r.path.as_path())
    }

    fn outside_share_roots(&self) -> Refusal {
        (
            403,
            format!(
                "You can only share files inside {} (the node's share roots; the operator sets them with --share-root)",
                list(&self.share)
            ),
        )
    }

    /// The reading rules for a path with every symlink resolved: the share
    /// root it is under and the path below it. Pure: no file system access.
    pub fn read_rule(&self, real: &Path) -> Result<(&Arc<Root>, PathBuf), Refusal> {
        if real.starts_with(&self.data.path) {
            return Err((
                403,
                format!(
                    "{} is inside the node's data directory ({}), which is never shared",
                    real.display(),
                    self.data.path.display()
                ),
            ));
        }
        let Some((root, rel)) = beneath(&self.share, real) else {
            return Err(self.outside_share_roots());
        };
        if rel.as_os_str().is_empty() {
            return Err(self.outside_share_roots());
        }
        if !self.hidden_ok {
            if let Some(h) = hidden_part(&rel) {
                return Err((
                    403,
                    format!(
                        "{} is hidden or inside a hidden folder ('{h}'); the node shares hidden files only when its operator starts it with --share-hidden",
                        real.display()
                    ),
                ));
            }
        }
        Ok((root, rel))
    }

    /// Opens a tracked file (its resolved path) for reading the safe way,
    /// checking the rules again: beneath its root, no symlink, a regular
    /// file, not on a pseudo file system. `O_PATH` in `flags` gives a
    /// descriptor for `fstat` only (rescans). Never blocks on a FIFO.
    pub fn open_read(&self, real: &Path, flags: i32) -> io::Result<(File, Metadata)> {
        let (root, rel) = self
            .read_rule(real)
            .map_err(|(_, msg)| io::Error::new(io::ErrorKind::PermissionDenied, msg))?;
        let fd = open_beneath(root, &rel, flags | libc::O_NONBLOCK)?;
        let file = File::from(fd);
        let meta = file.metadata()?;
        if !meta.is_file() {
            let what = if meta.is_dir() {
                "a directory, not a regular file"
            } else {
                "not a regular file"
            };
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is {what}", real.display()),
            ));
        }
        if let Some(fs) = pseudo_fs(file.as_raw_fd()) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} is on a pseudo file system ({fs}), whose files are never shared",
                    real.display()
                ),
            ));
        }
        Ok((file, meta))
    }

    /// `add-file`'s check of a path as the user gave it (absolute). Runs a
    /// realpath, an open and two fstat calls: the caller's loop turn pays
    /// for those (as it paid for the stat and open before this check).
    pub fn check_add(&self, path: &str) -> Result<Accepted, Refusal> {
        let real = match std::fs::canonicalize(path) {
            Ok(r) => r,
            Err(e) => return Err(access_error(path, &e)),
        };
        self.read_rule(&real)?;
        match self.open_read(&real, libc::O_RDONLY) {
            Ok((_, meta)) => Ok(Accepted {
                real,
                id: Identity::of(&meta),
            }),
            Err(e) => Err(match e.kind() {
                io::ErrorKind::InvalidInput => {
                    let m = e.to_string();
                    // Name the path as the user gave it.
                    (
                        400,
                        m.replacen(&real.display().to_string(), path, 1),
                    )
                }
                io::ErrorKind::PermissionDenied if e.raw_os_error().is_none() => {
                    (403, e.to_string())
                }
                _ if matches!(
                    e.raw_os_error(),
                    Some(libc::ELOOP) | Some(libc::ENOTDIR) | Some(libc::EXDEV)
                ) =>
                {
                    (
                        403,
                        format!("{path} changed while it was being checked (a symlink appeared on the way); try again"),
                    )
                }
                _ => access_error(path, &e),
            }),
        }
    }

    // ----- writing -----

    fn write_refusal(&self, dl: &Path) -> Refusal {
        let mut places = vec![format!("your downloads folder ({})", dl.display())];
        if !self.download.is_empty() {
            places.push(format!("the download roots ({})", list(&self.download)));
        }
        places.push(format!("the share roots ({})", list(&self.share)));
        (
            403,
            format!(
                "You can only save downloads inside {} (the operator sets them with --download-root and --share-root)",
                places.join(", ")
            ),
        )
    }

    /// Where a download for `user` may go: `target` (absolute) with every
    /// existing folder on the way resolved, under the user's downloads
    /// folder, a download root or a share root, not elsewhere in the data
    /// directory, nothing hidden below the root. Resolving stats the
    /// folders that exist (the loop pays for that); nothing is created.
    pub fn place(&self, user: &str, target: &Path) -> Result<Place, Refusal> {
        let rel_dl = Path::new("users").join(user).join("downloads");
        let dl = self.data.path.join(&rel_dl);
        if !target.is_absolute() {
            return Err((
                400,
                format!(
                    "'save_path' must be an absolute path, not '{}'",
                    target.display()
                ),
            ));
        }
        let Some(name) = target.file_name().map(OsStr::to_os_string) else {
            return Err((400, format!("{} does not name a file", target.display())));
        };
        // The deepest folder that exists, resolved; the rest must be plain names.
        let mut tail: Vec<OsString> = Vec::new();
        let mut at = target.parent();
        let base = loop {
            let Some(dir) = at else {
                return Err(self.write_refusal(&dl));
            };
            match std::fs::canonicalize(dir) {
                Ok(real) => break real,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match dir.file_name() {
                        Some(n) if n != ".." => tail.push(n.to_os_string()),
                        _ => {
                            return Err((400, format!("{} is not a plain path", target.display())))
                        }
                    }
                    at = dir.parent();
                }
                Err(e) => return Err(access_error(&dir.display().to_string(), &e)),
            }
        };
        let mut real = base;
        for n in tail.iter().rev() {
            if n == "." {
                continue;
            }
            real.push(n);
        }
        // A `..` that does not exist yet cannot be resolved: plain names only.
        if real.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err((400, format!("{} is not a plain path", target.display())));
        }
        real.push(&name);
        // `from_fd`: the path below the root's descriptor; `below`: the part
        // judged for hidden names (below the downloads folder in the data dir).
        let (root, from_fd, below) = if real.starts_with(&self.data.path) {
            match real.strip_prefix(&dl) {
                Ok(rel) => (self.data.clone(), rel_dl.join(rel), rel.to_path_buf()),
                Err(_) => return Err(self.write_refusal(&dl)),
            }
        } else {
            let mut all: Vec<Arc<Root>> = self.download.clone();
            all.extend(self.share.iter().cloned());
            match beneath(&all, &real) {
                Some((r, rel)) => (r.clone(), rel.clone(), rel),
                None => return Err(self.write_refusal(&dl)),
            }
        };
        if below.as_os_str().is_empty() || plain_parts(&from_fd).is_err() {
            return Err(self.write_refusal(&dl));
        }
        if !self.hidden_ok {
            if let Some(h) = hidden_part(&below) {
                return Err((
                    403,
                    format!(
                        "{} is hidden or inside a hidden folder ('{h}'); downloads never go there unless the node runs with --share-hidden",
                        real.display()
                    ),
                ));
            }
        }
        let mut dirs: Vec<OsString> = from_fd.iter().map(OsStr::to_os_string).collect();
        dirs.pop();
        Ok(Place {
            root,
            dirs,
            name,
            path: real,
        })
    }
}

fn access_error(path: &str, e: &io::Error) -> Refusal {
    match e.kind() {
        io::ErrorKind::NotFound => (400, format!("No such file: {path}")),
        io::ErrorKind::PermissionDenied => {
            (400, format!("{path} is not readable (permission denied)"))
        }
        _ => (400, format!("Cannot access {path}: {e}")),
    }
}

/// Where one download is written: a folder beneath a granted root (reached
/// without following symlinks) and a file name in it.
#[derive(Clone)]
pub struct Place {
    root: Arc<Root>,
    /// Folders from the root's descriptor down to the file's folder.
    dirs: Vec<OsString>,
    name: OsString,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    struct Setup {
        _tmp: tempfile::TempDir,
        share: PathBuf,
        data: PathBuf,
        outside: PathBuf,
        dl: PathBuf,
        sb: Sandbox,
    }

    fn setup(hidden_ok: bool) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(tmp.path()).unwrap();
        let share = base.join("share");
        let data = share.join("data");
        let outside = base.join("outside");
        let dl = base.join("dl");
        for d in [&share, &data, &outside, &dl] {
            fs::create_dir_all(d).unwrap();
        }
        let sb = Sandbox::new(
            std::slice::from_ref(&share),
            std::slice::from_ref(&dl),
            &data,
            hidden_ok,
        )
        .unwrap();
        Setup {
            _tmp: tmp,
            share,
            data,
            outside,
            dl,
            sb,
        }
    }

    fn s(p: &Path) -> &str {
        p.to_str().unwrap()
    }

    #[test]
    fn a_missing_root_is_a_start_error_naming_the_flag() {
        let tmp = tempfile::tempdir().unwrap();
        let e = Sandbox::new(&[tmp.path().join("nope")], &[], tmp.path(), false)
            .err()
            .unwrap();
        assert!(
            e.starts_with("--share-root ") && e.contains("no such folder"),
            "{e}"
        );
        let e = Sandbox::new(
            &[tmp.path().into()],
            &[tmp.path().join("x")],
            tmp.path(),
            false,
        )
        .err()
        .unwrap();
        assert!(e.starts_with("--download-root "), "{e}");
    }

    #[test]
    fn reading_stays_under_the_share_roots() {
        let t = setup(false);
        let ok = t.share.join("a.txt");
        fs::write(&ok, b"x").unwrap();
        let a = t.sb.check_add(s(&ok)).unwrap();
        assert_eq!(a.real, ok);
        assert_eq!(a.id.size, 1);

        let out = t.outside.join("b.txt");
        fs::write(&out, b"x").unwrap();
        let e = t.sb.check_add(s(&out)).unwrap_err();
        assert_eq!(e.0, 403);
        assert!(
            e.1.contains("--share-root") && e.1.contains(s(&t.share)),
            "{}",
            e.1
        );

        // A symlink inside that points outside is judged by its target.
        let link = t.share.join("link.txt");
        symlink(&out, &link).unwrap();
        assert_eq!(t.sb.check_add(s(&link)).unwrap_err().0, 403);
        // One that stays inside is fine, and names its target.
        let inner = t.share.join("inner.txt");
        symlink(&ok, &inner).unwrap();
        assert_eq!(t.sb.check_add(s(&inner)).unwrap().real, ok);

        // The data directory is never shared, even under a share root.
        let secret = t.data.join("secrets.json");
        fs::write(&secret, b"{}").unwrap();
        let e = t.sb.check_add(s(&secret)).unwrap_err();
        assert_eq!(e.0, 403);
        assert!(e.1.contains("data directory"), "{}", e.1);

        // `..` is resolved before judging.
        let sneaky = format!("{}/../outside/b.txt", s(&t.share));
        assert_eq!(t.sb.check_add(&sneaky).unwrap_err().0, 403);
        // The root itself is not a file under it.
        assert!(t.sb.read_rule(&t.share).is_err());
    }

    #[test]
    fn hidden_parts_below_the_root_count_only_there() {
        let t = setup(false);
        fs::create_dir_all(t.share.join(".ssh")).unwrap();
        fs::write(t.share.join(".ssh/id"), b"k").unwrap();
        fs::write(t.share.join(".env"), b"k").unwrap();
        for p in [".ssh/id", ".env"] {
            let e = t.sb.check_add(s(&t.share.join(p))).unwrap_err();
            assert_eq!(e.0, 403, "{p}");
            assert!(e.1.contains("--share-hidden"), "{}", e.1);
        }
        let open = setup(true);
        fs::write(open.share.join(".env"), b"k").unwrap();
        assert!(open.sb.check_add(s(&open.share.join(".env"))).is_ok());
        // A hidden folder above the root (tempfile's `.tmpXXXX`) does not count.
        let tmp = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(tmp.path()).unwrap();
        fs::write(root.join("f"), b"x").unwrap();
        let sb = Sandbox::new(std::slice::from_ref(&root), &[], &t.data, false).unwrap();
        assert!(sb.check_add(s(&root.join("f"))).is_ok());
    }

    #[test]
    fn only_regular_files_and_no_pseudo_file_systems() {
        let t = setup(false);
        let e = t.sb.check_add(s(&t.share)).unwrap_err();
        assert_eq!(e.0, 403);
        fs::create_dir(t.share.join("d")).unwrap();
        let e = t.sb.check_add(s(&t.share.join("d"))).unwrap_err();
        assert_eq!(
            e,
            (
                400,
                format!(
                    "{} is a directory, not a regular file",
                    s(&t.share.join("d"))
                )
            )
        );
        let e = t.sb.check_add(s(&t.share.join("none"))).unwrap_err();
        assert_eq!(e.0, 400);
        assert!(e.1.starts_with("No such file"), "{}", e.1);
        let root = Sandbox::new(&[PathBuf::from("/")], &[], &t.data, false).unwrap();
        let e = root.check_add("/proc/self/status").unwrap_err();
        assert_eq!(e.0, 403, "{}", e.1);
        assert!(e.1.contains("pseudo file system (proc)"), "{}", e.1);
    }

    #[test]
    fn a_swapped_in_symlink_is_never_followed_on_reopen() {
        let t = setup(false);
        let f = t.share.join("f.txt");
        fs::write(&f, b"mine").unwrap();
        let a = t.sb.check_add(s(&f)).unwrap();
        fs::remove_file(&f).unwrap();
        fs::write(t.outside.join("x"), b"theirs").unwrap();
        symlink(t.outside.join("x"), &f).unwrap();
        let e = t.sb.open_read(&a.real, libc::O_RDONLY).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
        // A folder on the way swapped for a symlink, too.
        fs::create_dir(t.share.join("sub")).unwrap();
        fs::write(t.share.join("sub/g"), b"g").unwrap();
        let g = t.sb.check_add(s(&t.share.join("sub/g"))).unwrap();
        fs::rename(t.share.join("sub"), t.share.join("sub-old")).unwrap();
        fs::create_dir(t.outside.join("sub")).unwrap();
        fs::write(t.outside.join("sub/g"), b"theirs").unwrap();
        symlink(t.outside.join("sub"), t.share.join("sub")).unwrap();
        assert!(t.sb.open_read(&g.real, libc::O_RDONLY).is_err());
        // The component walk (kernels without openat2) refuses the same.
        let (root, rel) = t.sb.read_rule(&g.real).unwrap();
        NO_OPENAT2.store(true, Ordering::Relaxed);
        let walked = open_beneath(root, &rel, libc::O_RDONLY);
        NO_OPENAT2.store(false, Ordering::Relaxed);
        assert!(walked.is_err());
    }

    #[test]
    fn writing_stays_in_granted_folders() {
        let t = setup(false);
        let dl = t.data.join("users/bob/downloads");
        // Default downloads folder (not created yet), download roots, share roots.
        let p = t.sb.place("bob", &dl.join("a.bin")).unwrap();
        assert_eq!(p.path, dl.join("a.bin"));
        assert!(t.sb.place("bob", &t.dl.join("new/deeper/a.bin")).is_ok());
        assert!(t.sb.place("bob", &t.share.join("a.bin")).is_ok());
        // Elsewhere in the data directory, another user's folder, outside: 403.
        for bad in [
            t.data.join("secrets.json"),
            t.data.join("users/alice/downloads/a.bin"),
            t.outside.join("a.bin"),
            t.outside.join("missing/folders/a.bin"),
            PathBuf::from("/etc/passwd"),
        ] {
            let e = t.sb.place("bob", &bad).unwrap_err();
            assert_eq!(e.0, 403, "{}", bad.display());
            assert!(e.1.contains("--download-root"), "{}", e.1);
        }
        assert!(!t.outside.join("missing").exists());
        // Hidden below the root, and `..` that would climb out.
        assert_eq!(
            t.sb.place("bob", &t.share.join(".ssh/authorized_keys"))
                .unwrap_err()
                .0,
            403
        );
        let climb = t.share.join("nothere/../../outside/a.bin");
        assert!(t.sb.place("bob", &climb).is_err());
        // A symlinked folder is judged by where it leads.
        symlink(&t.outside, t.share.join("out")).unwrap();
        assert_eq!(
            t.sb.place("bob", &t.share.join("out/a.bin")).unwrap_err().0,
            403
        );
        assert_eq!(t.sb.place("bob", Path::new("rel.bin")).unwrap_err().0, 400);
    }

    #[test]
    fn folders_are_made_only_beneath_the_root_and_parts_are_exclusive() {
        let t = setup(false);
        let p = t.sb.place("bob", &t.dl.join("x/y/f.bin")).unwrap();
        let d = p.open_dir(true).unwrap();
        assert!(t.dl.join("x/y").is_dir());
        let part = p.part_name();
        d.create_new(&part).unwrap();
        assert!(d.create_new(&part).is_err(), "exclusive");
        d.unlink(&part).unwrap();
        // A planted symlink at the .part name is not followed.
        let victim = t.outside.join("victim");
        fs::write(&victim, b"keep").unwrap();
        symlink(&victim, t.dl.join("x/y/f.bin.part")).unwrap();
        assert!(d.create_new(&part).is_err());
        assert!(d.open_existing(&part).is_err());
        assert_eq!(d.entry(&part).unwrap(), Some(Entry::Other));
        d.unlink(&part).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        // A folder on the way swapped for a symlink stops the walk.
        fs::remove_dir_all(t.dl.join("x")).unwrap();
        symlink(&t.outside, t.dl.join("x")).unwrap();
        assert!(p.open_dir(true).is_err());
        assert!(!t.outside.join("y").exists());
        // Rename: never over something, unless a regular file and asked.
        let q = t.sb.place("bob", &t.dl.join("g.bin")).unwrap();
        let d = q.open_dir(true).unwrap();
        fs::write(t.dl.join("g.bin.part"), b"new").unwrap();
        fs::write(t.dl.join("g.bin"), b"old").unwrap();
        let e = d.rename(&q.part_name(), q.name(), false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        d.rename(&q.part_name(), q.name(), true).unwrap();
        assert_eq!(fs::read(t.dl.join("g.bin")).unwrap(), b"new");
        fs::write(t.dl.join("g.bin.part"), b"newer").unwrap();
        fs::remove_file(t.dl.join("g.bin")).unwrap();
        symlink(&victim, t.dl.join("g.bin")).unwrap();
        assert!(d.rename(&q.part_name(), q.name(), true).is_err());
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
    }
}
