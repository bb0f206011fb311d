//! What happens when the firmware dies: the panic message or the faulting program counter goes
//! to the debug console (QEMU's standard output), then the core halts with interrupts off, so
//! the failure stays on screen instead of scrolling away in a reboot loop. Enabled by the
//! `fatal-handlers` feature.

use core::fmt::Write;
use core::panic::PanicInfo;

use cortex_m_rt::{ExceptionFrame, exception};

use crate::console::Console;

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    cortex_m::interrupt::disable();
    let _ = writeln!(Console, "\npanic: {info}");
    halt()
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    let _ = writeln!(
        Console,
        "\nhard fault: pc {:#010x} lr {:#010x} xpsr {:#010x}",
        frame.pc(),
        frame.lr(),
        frame.xpsr()
    );
    halt()
}

fn halt() -> ! {
    loop {
        cortex_m::asm::wfi();
    }
}
