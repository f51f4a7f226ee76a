//! TCP keepalive on a connection's socket (setsockopt through libc): lets
//! the kernel find a peer that vanished without a FIN (a dead host, a
//! pulled cable, a NAT that forgot the mapping) on a connection that is
//! otherwise silent by design.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// Keepalive probing: the first probe after `idle` without traffic, then one
/// every `interval`; after `count` unanswered probes the kernel resets the
/// connection (the loop sees an error and closes it). Worst case a dead
/// peer is noticed `idle + interval × count` after its last packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    pub idle: Duration,
    pub interval: Duration,
    pub count: u32,
}

impl Keepalive {
    /// How long a silent dead peer can go unnoticed at most.
    pub fn detection_bound(&self) -> Duration {
        self.idle + self.interval * self.count
    }
}

fn set(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: a c_int option value of the right size for these options.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn get(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len describe a c_int the kernel fills in.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            &mut value as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whole seconds, at least 1, within what the kernel takes (32,767).
fn secs(d: Duration) -> libc::c_int {
    d.as_secs().clamp(1, 32_767) as libc::c_int
}

/// The probing timings alone (they act once `SO_KEEPALIVE` is on). Set on a
/// listening socket, every socket it accepts starts with them, so turning
/// keepalive on later is one call instead of four.
pub(crate) fn set_keepalive_timings(fd: RawFd, k: Keepalive) -> io::Result<()> {
    set(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, secs(k.idle))?;
    set(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, secs(k.interval))?;
    set(
        fd,
        libc::IPPROTO_TCP,
        libc::TCP_KEEPCNT,
        k.count.clamp(1, 127) as libc::c_int,
    )
}

pub(crate) fn set_keepalive(fd: RawFd, ka: Option<Keepalive>) -> io::Result<()> {
    match ka {
        None => set(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 0),
        Some(k) => {
            set_keepalive_timings(fd, k)?;
            set(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)
        }
    }
}

/// Turns keepalive on with the timings the socket has (from its listener).
pub(crate) fn keepalive_on(fd: RawFd) -> io::Result<()> {
    set(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)
}

pub(crate) fn keepalive(fd: RawFd) -> io::Result<Option<Keepalive>> {
    if get(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE)? == 0 {
        return Ok(None);
    }
    let n = |name| get(fd, libc::IPPROTO_TCP, name).map(|v| v.max(0) as u64);
    Ok(Some(Keepalive {
        idle: Duration::from_secs(n(libc::TCP_KEEPIDLE)?),
        interval: Duration::from_secs(n(libc::TCP_KEEPINTVL)?),
        count: n(libc::TCP_KEEPCNT)? as u32,
    }))
}

/// How long ago the kernel last received anything on the socket (data or a
/// bare ACK, keepalive answers included), from `TCP_INFO`.
pub(crate) fn last_heard(fd: RawFd) -> io::Result<Duration> {
    // SAFETY: tcp_info is plain old data; the kernel fills at most `len` bytes.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            &mut info as *mut libc::tcp_info as *mut libc::c_void,
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let ms = info.tcpi_last_data_recv.min(info.tcpi_last_ack_recv);
    Ok(Duration::from_millis(u64::from(ms)))
}

/// Bytes the kernel holds for `fd` that nobody has read yet (`FIONREAD`).
pub(crate) fn unread(fd: RawFd) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int into the value we own.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n as *mut libc::c_int) };
    if rc == 0 {
        Ok(n.max(0) as usize)
    } else {
        Err(io::Error::last_os_error())
    }
}
