//! The debug console: SEGGER RTT channel 0 ("Terminal", a 1 KiB ring in RAM) read by the
//! DK's on-board J-Link (`probe-rs attach`, `JLinkRTTViewer`). UART0 carries the link
//! protocol, so diagnostics go here instead. With no debugger attached, output that does not
//! fit is dropped rather than blocking.

use core::fmt;

/// Size of the RTT up buffer (static RAM).
pub const CONSOLE_BUFFER: usize = 1024;

/// Sets up the RTT control block. Called once, by `init`.
pub(crate) fn init() {
    rtt_target::rtt_init_print!(rtt_target::ChannelMode::NoBlockSkip, CONSOLE_BUFFER);
}

/// A handle on the console; any number may exist.
#[derive(Debug, Clone, Copy, Default)]
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        rtt_target::rprint!("{}", s);
        Ok(())
    }
}

/// Writes one line (a newline is added) to the console.
pub fn log(args: fmt::Arguments<'_>) {
    rtt_target::rprintln!("{}", args);
}
