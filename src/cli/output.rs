//! Standard output and error that never panic: `println!` panics when the reader has gone
//! (`mnist-wgpu train ... | head -2`), which would stop a run before it saves its model, metrics
//! and plots. Here a failed write gives up that stream for the rest of the run, quietly for a
//! closed pipe (the reader asked for no more), with one warning on stderr for any other error;
//! the work goes on and the exit code is the work's.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_GONE: AtomicBool = AtomicBool::new(false);
static STDERR_GONE: AtomicBool = AtomicBool::new(false);
static QUIET: AtomicBool = AtomicBool::new(false);

/// Silences (or restores) standard output, not errors or warnings: a search's trials print
/// nothing of their own, the search prints a line for each.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Writes to stdout unless an earlier write failed or output is quiet.
pub fn write_out(args: fmt::Arguments) {
    if STDOUT_GONE.load(Ordering::Relaxed) || QUIET.load(Ordering::Relaxed) {
        return;
    }
    if let Err(e) = io::stdout().lock().write_fmt(args) {
        stdout_failed(e);
    }
}

/// Flushes stdout (a line not yet ended), unless an earlier write failed.
pub fn flush_out() {
    if STDOUT_GONE.load(Ordering::Relaxed) {
        return;
    }
    if let Err(e) = io::stdout().lock().flush() {
        stdout_failed(e);
    }
}

fn stdout_failed(e: io::Error) {
    if !STDOUT_GONE.swap(true, Ordering::Relaxed) && e.kind() != io::ErrorKind::BrokenPipe {
        write_err(format_args!(
            "warning: cannot write to standard output ({e}); carrying on without it\n"
        ));
    }
}

/// Writes to stderr unless an earlier write failed (then there is nowhere left to say so).
pub fn write_err(args: fmt::Arguments) {
    if STDERR_GONE.load(Ordering::Relaxed) {
        return;
    }
    if io::stderr().lock().write_fmt(args).is_err() {
        STDERR_GONE.store(true, Ordering::Relaxed);
    }
}

/// `print!` to [`write_out`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::write_out(format_args!($($arg)*))
    };
}

/// `println!` to [`write_out`].
macro_rules! outln {
    () => {
        $crate::cli::output::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprintln!` to [`write_err`].
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::cli::output::write_err(format_args!("{}\n", format_args!($($arg)*)))
    };
}
