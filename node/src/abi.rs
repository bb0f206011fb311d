//! The host ABI (`modules/ABI.md`) as data: which functions the import module
//! [`IMPORT_MODULE`] offers, their signatures, the capability each belongs to, and the error
//! codes. The hub checks modules against it at `apply`; the agent links from it. One table, so
//! the two cannot disagree about what a capability grants.

use alloc::string::{String, ToString};

use wasmfleet_proto::Capabilities;

/// The versioned import module name of the host API.
pub const IMPORT_MODULE: &str = "wasmfleet_v1";

/// The export an event-driven module must have (a WASI command has `_start` instead).
pub const START_EXPORT: &str = "on_start";

/// A WebAssembly value type in a host function signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Val {
    /// `i32`.
    I32,
    /// `i64`.
    I64,
}

/// A group of host functions granted together by one manifest field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    /// Logging, clocks, timers, config, delay, exit: every module has these.
    Base,
    /// `capabilities.kv`.
    Kv,
    /// `capabilities.publish`.
    Publish,
    /// `capabilities.subscribe`.
    Subscribe,
    /// `capabilities.gpio`.
    Gpio,
    /// `capabilities.i2c`.
    I2c,
    /// `capabilities.spi`.
    Spi,
}

impl Capability {
    /// The manifest field that grants it.
    pub fn field(self) -> &'static str {
        match self {
            Capability::Base => "(always granted)",
            Capability::Kv => "capabilities.kv",
            Capability::Publish => "capabilities.publish",
            Capability::Subscribe => "capabilities.subscribe",
            Capability::Gpio => "capabilities.gpio",
            Capability::I2c => "capabilities.i2c",
            Capability::Spi => "capabilities.spi",
        }
    }

    /// Whether `caps` grants it.
    pub fn granted_by(self, caps: &Capabilities) -> bool {
        match self {
            Capability::Base => true,
            Capability::Kv => caps.kv_bytes > 0,
            Capability::Publish => !caps.publish.is_empty(),
            Capability::Subscribe => !caps.subscribe.is_empty(),
            Capability::Gpio => !caps.gpio.is_empty(),
            Capability::I2c => !caps.i2c.is_empty(),
            Capability::Spi => !caps.spi.is_empty(),
        }
    }
}

/// One host function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostFn {
    /// Import name.
    pub name: &'static str,
    /// Which capability grants it.
    pub capability: Capability,
    /// Parameter types.
    pub params: &'static [Val],
    /// Result types (none or one).
    pub results: &'static [Val],
}

use Capability::*;
use Val::{I32, I64};

const fn f(
    name: &'static str,
    capability: Capability,
    params: &'static [Val],
    results: &'static [Val],
) -> HostFn {
    HostFn {
        name,
        capability,
        params,
        results,
    }
}

/// Every function of [`IMPORT_MODULE`], as `modules/ABI.md` documents them.
pub const FUNCTIONS: &[HostFn] = &[
    f("log", Base, &[I32, I32, I32], &[]),
    f("clock_monotonic_ns", Base, &[], &[I64]),
    f("clock_wall_ns", Base, &[], &[I64]),
    f("timer_start", Base, &[I64, I64], &[I32]),
    f("timer_cancel", Base, &[I32], &[I32]),
    f("config_get", Base, &[I32, I32, I32, I32], &[I32]),
    f("delay_ns", Base, &[I64], &[]),
    f("exit", Base, &[I32], &[]),
    f("kv_get", Kv, &[I32, I32, I32, I32], &[I32]),
    f("kv_set", Kv, &[I32, I32, I32, I32], &[I32]),
    f("kv_delete", Kv, &[I32, I32], &[I32]),
    f("publish", Publish, &[I32, I32, I32, I32], &[I32]),
    f("subscribe", Subscribe, &[I32, I32], &[I32]),
    f("unsubscribe", Subscribe, &[I32], &[I32]),
    f("message_topic", Subscribe, &[I32, I32], &[I32]),
    f("message_payload", Subscribe, &[I32, I32], &[I32]),
    f("gpio_read", Gpio, &[I32], &[I32]),
    f("gpio_write", Gpio, &[I32, I32], &[I32]),
    f("gpio_watch", Gpio, &[I32, I32], &[I32]),
    f("gpio_unwatch", Gpio, &[I32], &[I32]),
    f("i2c_open", I2c, &[I32, I32], &[I32]),
    f("i2c_transaction", I2c, &[I32, I32, I32, I32], &[I32]),
    f("spi_open", Spi, &[I32, I32], &[I32]),
    f("spi_transaction", Spi, &[I32, I32, I32], &[I32]),
];

/// The host function named `name`, if the ABI has one.
pub fn function(name: &str) -> Option<&'static HostFn> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

/// Error codes host functions return (negative `i32`), as in `modules/ABI.md`.
#[allow(missing_docs)]
pub mod errno {
    pub const NOT_PERMITTED: i32 = -1;
    pub const NOT_FOUND: i32 = -2;
    pub const INVALID_ARGUMENT: i32 = -3;
    pub const BAD_HANDLE: i32 = -4;
    pub const BUSY: i32 = -5;
    pub const NO_SPACE: i32 = -6;
    pub const TOO_MANY: i32 = -7;
    pub const TOO_LARGE: i32 = -8;
    pub const BUS: i32 = -9;
    pub const NO_ACKNOWLEDGE: i32 = -10;
    pub const ARBITRATION_LOSS: i32 = -11;
    pub const IO: i32 = -12;
    pub const UNSUPPORTED: i32 = -13;
}

/// Limits the ABI states, shared by hosts.
pub mod limits {
    /// Timers per instance.
    pub const TIMERS: usize = 32;
    /// Subscriptions per instance.
    pub const SUBSCRIPTIONS: usize = 16;
    /// Largest publish payload.
    pub const PAYLOAD: usize = 16 << 10;
    /// Longest KV key.
    pub const KV_KEY: usize = 128;
    /// Largest KV value.
    pub const KV_VALUE: usize = 4096;
    /// Operations per bus transaction.
    pub const BUS_OPS: usize = 16;
    /// Bytes per bus transaction.
    pub const BUS_BYTES: usize = 4096;
    /// Longest single `delay_ns`.
    pub const DELAY_NS: u64 = 1_000_000_000;
    /// Events queued per instance.
    pub const EVENT_QUEUE: usize = 64;
}

/// Why a module's imports do not fit what it was granted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// A `wasmfleet_v1` function the ABI does not have.
    #[error("module imports `{IMPORT_MODULE}::{0}`, which the host API does not have")]
    Unknown(String),
    /// A function of a capability the manifest does not grant.
    #[error(
        "module imports `{IMPORT_MODULE}::{name}` but the deployment does not grant `{field}`; add it to the manifest's capabilities"
    )]
    NotGranted {
        /// The function.
        name: String,
        /// The manifest field that would grant it.
        field: &'static str,
    },
}

/// Checks that every `wasmfleet_v1` import in `imports` (module, name) exists and is granted
/// by `caps`. Other import modules (WASI) are not judged here.
pub fn check_imports<'a>(
    imports: impl IntoIterator<Item = (&'a str, &'a str)>,
    caps: &Capabilities,
) -> Result<(), ImportError> {
    for (module, name) in imports {
        if module != IMPORT_MODULE {
            continue;
        }
        let func = function(name).ok_or_else(|| ImportError::Unknown(name.to_string()))?;
        if !func.capability.granted_by(caps) {
            return Err(ImportError::NotGranted {
                name: name.to_string(),
                field: func.capability.field(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn imports_need_their_capability() {
        let none = Capabilities::default();
        assert_eq!(check_imports([(IMPORT_MODULE, "log")], &none), Ok(()));
        assert_eq!(
            check_imports([("wasi_snapshot_preview1", "fd_write")], &none),
            Ok(())
        );
        let err = check_imports([(IMPORT_MODULE, "log"), (IMPORT_MODULE, "i2c_open")], &none)
            .unwrap_err();
        assert!(err.to_string().contains("capabilities.i2c"), "{err}");
        let i2c = Capabilities {
            i2c: vec!["i2c-1".into()],
            ..Capabilities::default()
        };
        assert_eq!(check_imports([(IMPORT_MODULE, "i2c_open")], &i2c), Ok(()));
        assert!(matches!(
            check_imports([(IMPORT_MODULE, "format_disk")], &i2c),
            Err(ImportError::Unknown(_))
        ));
    }

    #[test]
    fn names_are_unique() {
        for (i, a) in FUNCTIONS.iter().enumerate() {
            assert!(
                FUNCTIONS[i + 1..].iter().all(|b| b.name != a.name),
                "{}",
                a.name
            );
        }
    }
}

#[cfg(test)]
mod doc_tests {
    use alloc::format;

    /// `modules/ABI.md` is the contract C and Rust guests are written against: every function
    /// of the table must be documented there, with its signature's arity.
    #[test]
    fn abi_md_documents_every_function() {
        let doc = include_str!("../../modules/ABI.md");
        for f in super::FUNCTIONS {
            let row = doc
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", f.name)))
                .unwrap_or_else(|| panic!("ABI.md has no row for `{}`", f.name));
            let sig = row.split('|').nth(2).unwrap_or_default();
            let (params, results) = sig.split_once("->").unwrap_or((sig, ""));
            let n_params = params.matches(',').count() + usize::from(!params.contains("()"));
            assert_eq!(
                n_params,
                f.params.len(),
                "parameters of `{}`: {row}",
                f.name
            );
            assert_eq!(
                results.contains("i32") || results.contains("i64"),
                !f.results.is_empty(),
                "result of `{}`: {row}",
                f.name
            );
        }
    }
}
