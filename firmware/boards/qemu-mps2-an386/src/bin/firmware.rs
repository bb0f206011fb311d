//! The Wasmfleet firmware for QEMU's mps2-an386: the node's main loop
//! ([`wasmfleet_fw_app::run`]) over this board's UART0 link, emulated flash and simulated
//! devices.
//!
//!   cd firmware && cargo build --release
//!   scripts/qemu.sh PORT        # UART0 on 127.0.0.1:PORT
//!   edge-agent --node gw --data DIR --mcu mcu-1=tcp:127.0.0.1:PORT
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use wasmfleet_fw_app::Offer;
use wasmfleet_fw_qemu_mps2_an386 as board;

wasmfleet_fw_app::board_hardware!(Qemu, board);

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
    wasmfleet_fw_app::run(Qemu(b), offer)
}
