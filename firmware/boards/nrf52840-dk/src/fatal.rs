//! What happens when the firmware dies: the panic message or the faulting program counter goes
//! to the RTT console, then the chip resets, so a node in the field comes back on its own (a
//! debugger attached at the time still sees the message). Enabled by the `fatal-handlers`
//! feature.

use core::fmt::Write;
use core::panic::PanicInfo;

use cortex_m::peripheral::SCB;
use cortex_m_rt::{ExceptionFrame, exception};

use crate::console::Console;

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    cortex_m::interrupt::disable();
    let _ = writeln!(Console, "\npanic: {info}");
    SCB::sys_reset()
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
    SCB::sys_reset()
}
