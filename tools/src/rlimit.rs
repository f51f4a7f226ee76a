//! Raising this process's open-files limit; the one libc call every tool makes first.

/// Raise the soft RLIMIT_NOFILE to the hard limit and return `(soft, hard)` as they are now.
/// Also grows the descriptor table to the limit (call it before starting threads): a
/// tool holding thousands of connections otherwise stalls 10–30 ms at the 1,024th,
/// 2,048th… (`reactor::limits::presize_fd_table`), and those stalls would show up as
/// the server's latency.
pub fn raise_nofile() -> (u64, u64) {
    let (soft, hard) = raise_soft();
    if soft > 0 {
        let _ = reactor::limits::presize_fd_table(soft);
    }
    (soft, hard)
}

fn raise_soft() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return (0, 0);
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    (lim.rlim_cur, lim.rlim_max)
}

/// Raise the limit and say on stderr what we got, as every tool does at start.
pub fn raise_and_report(tool: &str) -> u64 {
    let (soft, hard) = raise_nofile();
    eprintln!("{tool}: open files limit {soft} (hard {hard})");
    soft
}

/// The soft open-files limit of another process, from /proc/PID/limits.
pub fn nofile_of(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// How many connections the coordinator `pid` can take from us: its open-file
/// limit less a tenth (at least 1,000) as slack, because closed connections
/// linger on its side for a turn or two while new ones arrive. Without a pid,
/// `fallback`.
pub fn coordinator_fit(pid: Option<u32>, fallback: usize) -> usize {
    pid.and_then(nofile_of)
        .map(|l| (l as usize).saturating_sub((l as usize / 10).max(1000)))
        .unwrap_or(fallback)
}
