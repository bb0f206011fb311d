//! The debug console: UART1, transmit only, polled. UART0 carries the link protocol, so
//! diagnostics (simulated LED changes, panics, faults) go here instead; `scripts/qemu.sh`
//! connects it to QEMU's standard output.

use core::fmt::{self, Write};

use crate::cmsdk_uart::UART1;

/// Enables UART1's transmitter. Called once, by `init`.
pub(crate) fn init() {
    UART1.enable(false);
}

/// A handle on the console; any number may exist (writes are whole bytes, in order).
#[derive(Debug, Clone, Copy, Default)]
pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                UART1.write_byte(b'\r');
            }
            UART1.write_byte(b);
        }
        Ok(())
    }
}

/// Writes one line (a newline is added) to the console.
pub fn log(args: fmt::Arguments<'_>) {
    let _ = writeln!(Console, "{args}");
}
