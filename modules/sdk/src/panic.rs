//! The panic handler (feature `panic-handler`, on by default). A `no_std` cdylib needs one;
//! this one makes a panic visible: the message goes to `wasmfleet logs` at error level and
//! the instance ends as failed with exit code 101, as a Rust program's panic would.

use core::panic::PanicInfo;

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    match info.location() {
        Some(at) => crate::error!("panic at {}:{}: {}", at.file(), at.line(), info.message()),
        None => crate::error!("panic: {}", info.message()),
    }
    crate::exit(101)
}
