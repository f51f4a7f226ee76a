//! The system calls the sandbox opens with: `openat2` beneath a root's
//! descriptor (or a walk one component at a time with `O_NOFOLLOW` where the
//! kernel lacks it), and the checks on an opened descriptor (pseudo file
//! systems, hidden parts).

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};
use std::sync::atomic::{AtomicBool, Ordering};

use super::Root;

/// Pseudo file systems (statfs f_type): kernel state, not files. Their
/// "files" change on every read (rehashing forever) or expose the process
/// itself (`/proc/self/environ`). devtmpfs reports tmpfs's number; its
/// entries are device nodes, which the regular-file rule refuses.
pub(super) const PSEUDO_FS: &[(u64, &str)] = &[
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
pub(super) static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

pub(super) fn cstr(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))
}

pub(super) fn fd_from(rc: libc::c_long) -> io::Result<OwnedFd> {
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor returned by the kernel, owned from here.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as RawFd) })
}

pub(super) fn openat(
    dir: RawFd,
    name: &CStr,
    flags: i32,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
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
pub(super) fn open_beneath(root: &Root, rel: &Path, flags: i32) -> io::Result<OwnedFd> {
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
pub(super) fn plain_parts(rel: &Path) -> io::Result<Vec<&OsStr>> {
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
pub(super) fn pseudo_fs(fd: RawFd) -> Option<&'static str> {
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
pub(super) fn hidden_part(rel: &Path) -> Option<String> {
    rel.components().find_map(|c| match c {
        Component::Normal(n) if n.as_bytes().first() == Some(&b'.') => {
            Some(n.to_string_lossy().into_owned())
        }
        _ => None,
    })
}
