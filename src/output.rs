//! Standard output for the commands: one writer that treats a reader gone away
//! (`portcullis providers --json | head -1`) as the end of the output, not as a failure.
//!
//! `println!` panics when stdout is a closed pipe ("failed printing to stdout: Broken pipe").
//! Restoring the default `SIGPIPE` action would need `unsafe`, which the crate forbids; so every
//! line a command prints goes through [`write`](fn@write) (by [`outln!`](crate::outln) and
//! [`out!`](crate::out)), which returns [`OutputError::Closed`] instead, and `main` ends quietly with exit
//! status 0 on it.
//!
//! Standard error the same way: `eprintln!` panics (exit 101) when stderr is a closed pipe
//! (`portcullis check --config bad.yaml 2>&1 | head -0`), so every message to it goes through
//! [`write_err`] (by [`errln!`](crate::errln) and [`err!`](crate::err)), which drops what a
//! closed stderr cannot take: there is nowhere left to report it. The lib and the binary deny
//! `clippy::print_stderr` so that it stays so; tracing's writer drops its write errors too
//! (`log_internal_errors(false)` in [`crate::commands::init_tracing`]).

use std::fmt;
use std::io::{self, Write};

/// Why a command's output could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// Stdout's reader has closed the pipe: nobody reads what the command still had to say,
    /// so it stops there and exits 0 without a message.
    #[error("standard output was closed by its reader")]
    Closed,
    #[error("writing to standard output: {0}")]
    Io(io::Error),
}

/// Writes to stdout; a closed pipe is [`OutputError::Closed`].
pub fn write(args: fmt::Arguments<'_>) -> Result<(), OutputError> {
    write_to(&mut io::stdout().lock(), args)
}

/// Writes to `w`, flushing it so that a closed pipe is reported here and not lost in the
/// buffer's flush at exit.
pub fn write_to(w: &mut impl Write, args: fmt::Arguments<'_>) -> Result<(), OutputError> {
    w.write_fmt(args).and_then(|()| w.flush()).map_err(|e| match e.kind() {
        io::ErrorKind::BrokenPipe => OutputError::Closed,
        _ => OutputError::Io(e),
    })
}

/// Writes to stderr, ignoring any failure: a closed or broken stderr has nobody to tell.
pub fn write_err(args: fmt::Arguments<'_>) {
    let _ = io::stderr().lock().write_fmt(args);
}

/// Whether an error (anywhere in its chain) is stdout's reader closing the pipe.
pub fn is_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| matches!(c.downcast_ref(), Some(OutputError::Closed)))
}

/// `println!` for the commands: a [`Result`] to pass on with `?`.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::output::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for the commands: a [`Result`] to pass on with `?`.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write(format_args!($($arg)*))
    };
}

/// `eprintln!` that does not panic when stderr is closed (see [`write_err`]).
#[macro_export]
macro_rules! errln {
    () => {
        $crate::output::write_err(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_err(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprint!` that does not panic when stderr is closed (see [`write_err`]).
#[macro_export]
macro_rules! err {
    ($($arg:tt)*) => {
        $crate::output::write_err(format_args!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that has gone away.
    struct ClosedPipe;

    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_is_closed_and_other_errors_are_errors() {
        let e = write_to(&mut ClosedPipe, format_args!("x")).unwrap_err();
        assert!(is_closed(&anyhow::Error::from(e)));
        let mut full = [0u8; 1];
        let e = write_to(&mut &mut full[..], format_args!("too long")).unwrap_err();
        assert!(matches!(e, OutputError::Io(_)));
        assert!(!is_closed(&anyhow::Error::from(e)));
        let mut v = Vec::new();
        write_to(&mut v, format_args!("{}\n", 1)).unwrap();
        assert_eq!(v, b"1\n");
    }
}
