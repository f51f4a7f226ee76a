//! The terminal, for the command line: whether stdin/stdout are one, its
//! width, and reading a password with echo off (termios). Nothing else in
//! the command line calls libc.

use std::io::{BufRead, IsTerminal, Write};

pub fn stdin_is_tty() -> bool {
    std::io::stdin().is_terminal()
}

pub fn stdout_is_tty() -> bool {
    std::io::stdout().is_terminal()
}

/// Columns of the terminal on stdout; 80 when it cannot be told.
pub fn width() -> usize {
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct we own.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    if r == 0 && ws.ws_col > 0 {
        usize::from(ws.ws_col)
    } else {
        80
    }
}

/// One line from stdin, without its line ending.
pub fn read_line() -> std::io::Result<String> {
    let mut s = String::new();
    std::io::stdin().lock().read_line(&mut s)?;
    while s.ends_with('\n') || s.ends_with('\r') {
        s.pop();
    }
    Ok(s)
}

/// Asks on stderr and reads a line from the terminal on stdin with echo
/// off; echo comes back even if reading fails.
pub fn read_hidden(prompt: &str) -> std::io::Result<String> {
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let fd = libc::STDIN_FILENO;
    // SAFETY: tcgetattr fills the termios we own; checked before use.
    let mut old: libc::termios = unsafe { std::mem::zeroed() };
    let have = unsafe { libc::tcgetattr(fd, &mut old) } == 0;
    if have {
        let mut quiet = old;
        quiet.c_lflag &= !libc::ECHO;
        quiet.c_lflag |= libc::ECHONL;
        // SAFETY: a termios obtained from tcgetattr, changed in one flag.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    let line = read_line();
    if have {
        // SAFETY: restores exactly what tcgetattr returned.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &old) };
    }
    line
}
