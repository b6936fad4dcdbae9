//! Writing to stdout when the reader may leave early.
//!
//! `tensorlet predict … | head` closes the pipe after ten lines, and the next
//! write fails with `BrokenPipe`; std's `println!` panics on that ("failed
//! printing to stdout"). The `println!` and `print!` defined here shadow std's
//! in the whole CLI crate (`main.rs` declares this module before any other),
//! so every command uses them without naming them: a closed stdout ends the
//! process quietly with status 0, as the reader took what it wanted, and any
//! other write error (a full disk) is reported and exits 1.
//!
//! SIGPIPE stays ignored, as Rust sets it up: the servers write to sockets
//! with `writev`, which would raise it when a client goes away.

use std::fmt;
use std::io::{self, Write};

/// std's `println!`, ending quietly when the reader of stdout has gone.
macro_rules! println {
    () => {
        $crate::output::print_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::print_line(format_args!($($arg)*))
    };
}

/// std's `print!`, ending quietly when the reader of stdout has gone.
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::output::print(format_args!($($arg)*))
    };
}

/// Writes `args` to stdout.
pub fn print(args: fmt::Arguments<'_>) {
    if let Err(e) = io::stdout().lock().write_fmt(args) {
        stdout_failed(&e);
    }
}

/// Writes `args` and a newline to stdout.
pub fn print_line(args: fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        stdout_failed(&e);
    }
}

/// Stdout as a writer for the libraries' reports, ending as `println!`
/// does when the reader has gone.
pub struct Stdout;

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        io::stdout().write(buf).or_else(|e| stdout_failed(&e))
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stdout().flush().or_else(|e| stdout_failed(&e))
    }
}

fn stdout_failed(e: &io::Error) -> ! {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: cannot write to stdout: {e}");
    std::process::exit(1);
}
