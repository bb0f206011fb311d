//! Registers of the Arm CMSDK APB UART (Cortex-M System Design Kit TRM, DDI0479), the UART of
//! the MPS2 FPGA images, as QEMU models it (hw/char/cmsdk-apb-uart.c): one byte of buffer
//! each way, 8N1, no flow control.
//!
//! Two details of QEMU's model shape the driver: received bytes are only offered while
//! `STATE.RXFULL` is clear, so a byte left in `DATA` holds back the rest of the stream
//! (the TCP socket behind `-serial` applies back-pressure: nothing is lost); and the receive
//! interrupt is the sticky `INTSTATUS.RX` bit, set per received byte, cleared only by writing
//! it, not by reading `DATA`.

use core::ptr::{read_volatile, write_volatile};

const DATA: usize = 0x00;
const STATE: usize = 0x04;
const CTRL: usize = 0x08;
const INTSTATUS: usize = 0x0C;
const BAUDDIV: usize = 0x10;

const STATE_TXFULL: u32 = 1 << 0;
const STATE_RXFULL: u32 = 1 << 1;
const CTRL_TX_EN: u32 = 1 << 0;
const CTRL_RX_EN: u32 = 1 << 1;
const CTRL_RX_INTEN: u32 = 1 << 3;
const INT_RX: u32 = 1 << 1;

/// The APB clock of the UARTs: the AN386 SYSCLK, 25 MHz in QEMU (mps2.c `SYSCLK_FRQ`).
const PCLK_HZ: u32 = 25_000_000;
/// The line rate we program. QEMU ignores it on a socket, but insists on a divider ≥ 16.
const BAUD: u32 = 115_200;

/// One CMSDK UART at a fixed base address.
#[derive(Debug, Clone, Copy)]
pub struct CmsdkUart {
    base: usize,
}

/// UART0: QEMU's first `-serial`.
pub const UART0: CmsdkUart = CmsdkUart { base: 0x4000_4000 };
/// UART1: QEMU's second `-serial`.
pub const UART1: CmsdkUart = CmsdkUart { base: 0x4000_5000 };

impl CmsdkUart {
    fn read(self, offset: usize) -> u32 {
        // SAFETY: `base + offset` is a register of a CMSDK UART, always mapped on this board.
        unsafe { read_volatile((self.base + offset) as *const u32) }
    }

    fn write(self, offset: usize, value: u32) {
        // SAFETY: as in `read`; these registers have no memory-safety side effects.
        unsafe { write_volatile((self.base + offset) as *mut u32, value) }
    }

    /// Sets the divider and enables the transmitter, plus the receiver and its interrupt
    /// when `receive`.
    pub fn enable(self, receive: bool) {
        self.write(BAUDDIV, PCLK_HZ / BAUD);
        let rx = if receive {
            CTRL_RX_EN | CTRL_RX_INTEN
        } else {
            0
        };
        self.write(CTRL, CTRL_TX_EN | rx);
    }

    /// Sends one byte, waiting while the one-byte transmit buffer is still full.
    pub fn write_byte(self, byte: u8) {
        while self.read(STATE) & STATE_TXFULL != 0 {
            core::hint::spin_loop();
        }
        self.write(DATA, u32::from(byte));
    }

    /// Takes the received byte, if one is waiting (which also lets QEMU offer the next).
    pub fn read_byte(self) -> Option<u8> {
        (self.read(STATE) & STATE_RXFULL != 0).then(|| self.read(DATA) as u8)
    }

    /// Whether a received byte waits in `DATA`.
    pub fn rx_full(self) -> bool {
        self.read(STATE) & STATE_RXFULL != 0
    }

    /// Acknowledges the receive interrupt (write-one-to-clear).
    pub fn clear_rx_interrupt(self) {
        self.write(INTSTATUS, INT_RX);
    }
}
