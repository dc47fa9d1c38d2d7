//! Standard output, every write checked. `println!` panics when the reader
//! of a pipe went away (`granary admin report | head`); here that is
//! [`CliError::BrokenPipe`], which ends the command quietly.

use std::io::Write;

use crate::error::{CliError, CliResult};

/// Writes one line to stdout.
pub fn line(args: std::fmt::Arguments<'_>) -> CliResult {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .map_err(CliError::stdout)
}

/// A line saying what a command did (`rm`'s "Deleted /x"): when nobody
/// reads it any more the work goes on, as `hdfs dfs` goes on.
pub fn note(args: std::fmt::Arguments<'_>) {
    let _ = line(args);
}

/// `println!` that returns a [`CliResult`] instead of panicking.
macro_rules! outln {
    () => {
        $crate::out::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::out::line(format_args!($($arg)*))
    };
}

/// [`note`] with `format!` arguments.
macro_rules! noteln {
    ($($arg:tt)*) => {
        $crate::out::note(format_args!($($arg)*))
    };
}

pub(crate) use {noteln, outln};
