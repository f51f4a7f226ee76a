//! Process limits: the open-file soft limit is raised to the hard limit at
//! start, because every connection costs a descriptor.

use std::io;

/// Raises RLIMIT_NOFILE's soft limit to its hard limit; returns (before, after).
pub fn raise_nofile() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((before, lim.rlim_cur))
}

/// Descriptor tables larger than this are not grown ahead (8 MiB of table).
const PRESIZE_MAX: u64 = 1 << 20;

/// Grows the process's descriptor table now to hold `limit` descriptors
/// (at most [`PRESIZE_MAX`]), so it never grows under load. Call it while
/// the process has one thread: the kernel grows a table shared by several
/// threads only after an RCU grace period, and the thread that opened the
/// 1,024th, 2,048th, 4,096th… descriptor (an `accept`) slept 9–29 ms each
/// time (`perf trace --duration 5` of the coordinator under the 10k preset;
/// docs/architecture.md, "Stalls"). Costs 8 bytes per slot and a bit of
/// bitmap: 256 KiB at a 20,000 limit. Returns the table size made ready.
pub fn presize_fd_table(limit: u64) -> io::Result<u64> {
    let top = limit.min(PRESIZE_MAX);
    if top < 2 {
        return Ok(top);
    }
    let target = (top - 1) as libc::c_int;
    // SAFETY: plain descriptor calls on descriptors this function opens and
    // closes itself; `target` is below the soft limit, so F_DUPFD may use it.
    unsafe {
        let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let high = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, target);
        let err = io::Error::last_os_error();
        libc::close(fd);
        if high < 0 {
            return Err(err);
        }
        libc::close(high);
    }
    Ok(top)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_descriptors() -> usize {
        std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
    }

    #[test]
    fn presizing_leaves_no_descriptor_open_and_respects_the_limit() {
        let (_, soft) = raise_nofile().expect("raise the limit");
        let before = open_descriptors();
        let ready = presize_fd_table(soft.min(4096)).expect("presize");
        assert_eq!(ready, soft.min(4096));
        // Other tests run in parallel threads and may open files meanwhile:
        // only a leak of ours would keep the count up every time.
        let after = (0..20)
            .map(|_| open_descriptors())
            .min()
            .unwrap_or(usize::MAX);
        assert!(
            after <= before,
            "descriptors before {before}, after {after}"
        );
        // Beyond the soft limit, the kernel refuses: an error, not a panic.
        assert!(presize_fd_table(soft + 10).is_err() || soft + 10 > PRESIZE_MAX);
    }
}
