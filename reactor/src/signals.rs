//! SIGINT and SIGTERM become a flag and a wake-up of the loop.
//!
//! The signals are blocked in the calling thread (and so in every thread it
//! starts afterwards) and a small thread takes them with `sigwait`, so no code
//! runs in signal context. Call [`watch`] before starting other threads.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mio::Waker;

pub fn watch(waker: Arc<Waker>) -> io::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    // SAFETY: plain libc signal-set manipulation on values we own.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        set
    };
    let seen = flag.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let mut sig: libc::c_int = 0;
            // SAFETY: sigwait on a set we built; writes into `sig`.
            let rc = unsafe { libc::sigwait(&set, &mut sig) };
            if rc == 0 {
                seen.store(true, Ordering::SeqCst);
                let _ = waker.wake();
            }
        })?;
    Ok(flag)
}
