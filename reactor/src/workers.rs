//! A small pool of named worker threads for slow work (password hashing,
//! hashing files, fsync). Jobs go in through a bounded queue; a full queue is
//! refused at once ([`Busy`]) so the loop never blocks. Results come back on
//! a completion list and the loop is woken through its `Waker`.

use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use mio::Waker;

type Task<T> = Box<dyn FnOnce() -> T + Send>;

/// The queue is full: answer "busy" (HTTP 503) rather than wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

pub struct Pool<T: Send + 'static> {
    tx: SyncSender<Task<T>>,
    done: Arc<Mutex<Vec<T>>>,
}

impl<T: Send + 'static> Pool<T> {
    /// Starts `threads` workers named `<name>-<i>` with room for `queue` waiting jobs.
    pub fn new(
        name: &str,
        threads: usize,
        queue: usize,
        waker: Arc<Waker>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel::<Task<T>>(queue);
        let rx = Arc::new(Mutex::new(rx));
        let done = Arc::new(Mutex::new(Vec::new()));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let done = done.clone();
            let waker = waker.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(guard) => match guard.recv() {
                            Ok(job) => job,
                            Err(_) => return,
                        },
                        Err(_) => return,
                    };
                    let out = job();
                    if let Ok(mut d) = done.lock() {
                        d.push(out);
                    }
                    let _ = waker.wake();
                })?;
        }
        Ok(Pool { tx, done })
    }

    pub fn submit(&self, job: impl FnOnce() -> T + Send + 'static) -> Result<(), Busy> {
        match self.tx.try_send(Box::new(job)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => Err(Busy),
        }
    }

    /// Takes the finished results (call from the loop's wake callback).
    pub fn drain(&self) -> Vec<T> {
        match self.done.lock() {
            Ok(mut d) => std::mem::take(&mut *d),
            Err(_) => Vec::new(),
        }
    }
}
