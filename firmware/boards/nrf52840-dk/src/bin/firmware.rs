//! The Wasmfleet firmware for the nRF52840-DK: the node's main loop
//! ([`wasmfleet_fw_app::run`]) over UARTE0 (the DK's VCOM port), the NVMC flash, TWIM0 and the LED and
//! button.
//!
//!   cd firmware && cargo build --release   # then flash target/.../wasmfleet-firmware-nrf52840
//!   edge-agent --node gw --data DIR --mcu mcu-1=serial:/dev/ttyACM0
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use wasmfleet_fw_app::Offer;
use wasmfleet_fw_nrf52840_dk as board;

wasmfleet_fw_app::board_hardware!(Nrf52840Dk, board);

/// Workloads' memory: what the 160 KiB heap has left beside wasmtime (engine, module, store,
/// 16 KiB Pulley stack) and the node's own state.
const WORKLOAD_MEMORY: u64 = 96 * 1024;

#[entry]
fn main() -> ! {
    let b = board::init();
    board::log(format_args!("wasmfleet firmware on {}", board::BOARD));
    let offer = Offer {
        memory_bytes: WORKLOAD_MEMORY,
        max_workloads: 2,
    };
    wasmfleet_fw_app::run(Nrf52840Dk(b), offer)
}
