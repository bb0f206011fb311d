//! Logging: one host `log` call per line. The macros format into a fixed stack buffer
//! ([`LINE_MAX`] bytes) because guests have no allocator; longer lines are truncated and end
//! in `...`, so a truncation is visible in `wasmfleet logs`.

use crate::strbuf::StrBuf;
use crate::sys;
use core::fmt;

/// The longest log line the macros produce, in bytes.
pub const LINE_MAX: usize = 256;

/// Log levels, numbered as the ABI numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(i32)]
pub enum Level {
    /// To stderr, prefixed `error: `.
    Error = 0,
    /// To stderr, prefixed `warn: `.
    Warn = 1,
    /// To stdout, as is.
    Info = 2,
    /// To stdout, prefixed `debug: `.
    Debug = 3,
    /// To stdout, prefixed `trace: `.
    Trace = 4,
}

/// Logs one line as it is (no length limit here; the host's log budget applies).
pub fn log(level: Level, line: &str) {
    let (ptr, len) = sys::slice(line.as_bytes());
    // SAFETY: `line` is a live slice in our memory.
    unsafe { sys::log(level as i32, ptr, len) }
}

/// Formats `args` into a [`LINE_MAX`]-byte stack buffer and logs it. Used by the macros.
pub fn log_fmt(level: Level, args: fmt::Arguments<'_>) {
    log(level, format_line(args).as_str());
}

/// `args` formatted into at most [`LINE_MAX`] bytes, ending in `...` if cut.
fn format_line(args: fmt::Arguments<'_>) -> StrBuf<LINE_MAX> {
    let mut line = StrBuf::<LINE_MAX>::format(args);
    if line.truncated() {
        line.cut(LINE_MAX - 3);
        let _ = fmt::Write::write_str(&mut line, "...");
    }
    line
}

/// Logs at error level: `error!("read failed: {e}")`.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::log_fmt($crate::log::Level::Error, format_args!($($arg)*)) };
}

/// Logs at warn level: `warn!("retrying in {ms} ms")`.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::log_fmt($crate::log::Level::Warn, format_args!($($arg)*)) };
}

/// Logs at info level: `info!("temp={t:.1}C")`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::log_fmt($crate::log::Level::Info, format_args!($($arg)*)) };
}

/// Logs at debug level: `debug!("raw={raw:#x}")`.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::log_fmt($crate::log::Level::Debug, format_args!($($arg)*)) };
}

/// Logs at trace level: `trace!("tick")`.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => { $crate::log::log_fmt($crate::log::Level::Trace, format_args!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_end_in_dots() {
        let long = "é".repeat(200); // 400 bytes
        let line = format_line(format_args!("x{long}"));
        assert!(line.len() <= LINE_MAX && line.ends_with("..."));
        assert_eq!(format_line(format_args!("n={}", 5)).as_str(), "n=5");
    }
}
