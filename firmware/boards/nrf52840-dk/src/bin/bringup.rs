//! Bring-up for the nRF52840-DK: proves UARTE0 receive and transmit, the RTC clock, the heap,
//! the NVMC storage (it erases the last storage page) and the I2C bus, LED and button, before
//! the real firmware relies on them.
//!
//!   cd firmware && cargo build --release -p wasmfleet-fw-nrf52840-dk
//!   probe-rs run --chip nRF52840_xxAA target/thumbv7em-none-eabihf/release/wasmfleet-bringup-nrf52840
//!
//! On the DK's VCOM port (115 200 baud 8N1): the banner and check results, then every received
//! byte echoed back and `now_ms N` once a second. LED1 follows button 1; the RTT console logs
//! the start.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::fmt::Write;

use cortex_m_rt::entry;
use embedded_hal::digital::{InputPin, OutputPin, PinState};
use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
use wasmfleet_fw_nrf52840_dk::{self as board, Board, Uart0};

#[entry]
fn main() -> ! {
    let mut b = board::init();
    b.uart.write_all(b"wasmfleet nrf52840-dk up\r\n");
    board::log(format_args!("bring-up: {} up", board::BOARD));
    check_heap(&mut b.uart);
    check_flash(&mut b);
    check_sensor(&mut b);

    let mut buf = [0u8; 64];
    let mut next_tick = board::now_ms() + 1000;
    loop {
        let n = b.uart.read(&mut buf);
        b.uart.write_all(&buf[..n]);
        let now = board::now_ms();
        if now >= next_tick {
            let _ = write!(b.uart, "now_ms {now}\r\n");
            next_tick += 1000;
        }
        let pressed = b.devices.button.is_high().unwrap_or(false);
        let _ = b.devices.led.set_state(PinState::from(pressed));
        board::sleep_until(next_tick);
    }
}

/// Allocates, frees, and reports the heap's and stack's high-water marks.
fn check_heap(uart: &mut Uart0) {
    let squares: Vec<u32> = (0..1000).map(|i| i * i).collect();
    let sum: u64 = squares.iter().map(|&s| u64::from(s)).sum();
    drop(squares);
    let heap = board::heap_stats();
    let stack = board::stack_stats();
    let _ = write!(
        uart,
        "heap: {} bytes, {} used, peak {} (sum {sum}); stack: {} bytes, peak {}\r\n",
        heap.size, heap.used, heap.peak, stack.size, stack.peak
    );
}

/// Erases the last page, writes over it twice (bits only clear), reads it back both ways.
fn check_flash(b: &mut Board) {
    let flash = &mut b.flash;
    let page = (flash.capacity() - board::ERASE_SIZE) as u32;
    let ok = flash.erase(page, page + board::ERASE_SIZE as u32).is_ok()
        && flash.write(page, &[0xF0, 0x0F, 0xAA, 0xFF]).is_ok()
        && flash.write(page, &[0x0F, 0xFF, 0xFF, 0x55]).is_ok();
    let mut back = [0u8; 8];
    let read = flash.read(page, &mut back).is_ok();
    // SAFETY: nothing writes or erases this page while `mapped` is in use (just below).
    let mapped = unsafe { flash.mapped(page, 4) }.map(|s| s == &back[..4]);
    let good = ok && read && back == [0x00, 0x0F, 0xAA, 0x55, 0xFF, 0xFF, 0xFF, 0xFF];
    let _ = write!(
        b.uart,
        "flash: {} KiB at {:#010x}; erase/write/read {}\r\n",
        flash.capacity() / 1024,
        flash.base_address(),
        if good && mapped == Ok(true) {
            "ok"
        } else {
            "FAILED"
        }
    );
}

/// Reads a BME280's chip id and a forced measurement's raw temperature (fails politely
/// without a sensor on the header's I2C pins).
fn check_sensor(b: &mut Board) {
    let bus = b.devices.i2c(board::I2C_BUS).expect("i2c-1 exists");
    let mut id = [0u8];
    let id_ok = bus.write_read(0x76, &[0xD0], &mut id).is_ok();
    let mut raw = [0u8; 3];
    let measured = bus.write(0x76, &[0xF4, 0b0010_0101]).is_ok()
        && bus.write_read(0x76, &[0xFA], &mut raw).is_ok();
    let adc_t = (u32::from(raw[0]) << 12) | (u32::from(raw[1]) << 4) | u32::from(raw[2] >> 4);
    let _ = write!(
        b.uart,
        "{}: BME280 at 0x76 chip id {:#04x} ({}), raw temperature {adc_t} ({})\r\n",
        board::I2C_BUS,
        id[0],
        if id_ok { "ok" } else { "FAILED" },
        if measured { "ok" } else { "FAILED" }
    );
}
