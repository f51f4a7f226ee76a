//! A TCP relay on a port-0 address of its own, in front of a process that
//! restarts on new ports: what was pointed at the relay follows the restart.
//! A connection made while nothing listens behind it is closed at once, as
//! a refused connection would be.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

pub struct Relay {
    pub addr: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
}

impl Relay {
    pub fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let addr = listener.local_addr().expect("relay address");
        let target = Arc::new(Mutex::new(target));
        let to = target.clone();
        // The thread ends with the test process; it only ever blocks in accept.
        std::thread::spawn(move || {
            for down in listener.incoming() {
                let Ok(down) = down else { continue };
                let at = *to.lock().expect("relay target");
                match TcpStream::connect(at) {
                    Ok(up) => pipe(down, up),
                    Err(_) => drop(down),
                }
            }
        });
        Relay { addr, target }
    }

    /// New connections go to `target` from now on.
    pub fn point_at(&self, target: SocketAddr) {
        *self.target.lock().expect("relay target") = target;
    }
}

/// Copies both ways until either side closes, then closes both.
fn pipe(down: TcpStream, up: TcpStream) {
    let (Ok(down2), Ok(up2)) = (down.try_clone(), up.try_clone()) else {
        return;
    };
    std::thread::spawn(move || copy(down, up));
    std::thread::spawn(move || copy(up2, down2));
}

fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
