//! The device part of the vector table: the AN386 has 32 external interrupts (QEMU's mps2.c
//! sets `num-irq` 32). There is no peripheral access crate for this FPGA image, so the table
//! is written out here; cortex-m-rt places `__INTERRUPTS` right after the 16 core exceptions.
//!
//! QEMU's interrupt map (mps2.c): UARTn receive at 0/2/4/18/20, transmit one above each, the
//! UART0–2 overflows ORed onto 12; timers at 8 and 9, the dual timer at 10, Ethernet at 13.
//! We only use UART0 receive.

use cortex_m::interrupt::InterruptNumber;

/// External interrupts this crate enables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Interrupt {
    /// CMSDK UART0 receive (a byte arrived).
    Uart0Rx = 0,
}

// SAFETY: every variant is a valid AN386 interrupt number (< 32).
unsafe impl InterruptNumber for Interrupt {
    fn number(self) -> u16 {
        self as u16
    }
}

/// One vector table slot.
#[repr(C)]
pub union Vector {
    handler: unsafe extern "C" fn(),
}

unsafe extern "C" {
    /// cortex-m-rt's catch-all handler (loops forever unless the program defines its own).
    fn DefaultHandler();
}

const DEFAULT: Vector = Vector {
    handler: DefaultHandler,
};

/// IRQ 0..32. The handlers are the drivers' interrupt service routines.
#[unsafe(link_section = ".vector_table.interrupts")]
#[unsafe(no_mangle)]
pub static __INTERRUPTS: [Vector; 32] = {
    let mut table = [DEFAULT; 32];
    table[Interrupt::Uart0Rx as usize] = Vector {
        handler: crate::uart::uart0_rx_interrupt,
    };
    table
};
