//! The ABI's negative return codes as a Rust error, usable as the `Error` of every
//! embedded-hal trait the SDK implements, so drivers see the real cause.

use core::fmt;

/// `Result` with the SDK's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;

/// An error code returned by a host function (the table in `modules/ABI.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// -1: outside the module's capabilities (topic, bus or pin not granted).
    NotPermitted,
    /// -2: no such config key, KV key or device.
    NotFound,
    /// -3: a range outside memory, invalid UTF-8, a malformed topic, an unknown op kind.
    InvalidArgument,
    /// -4: the handle was never returned, or was closed.
    BadHandle,
    /// -5: rate limit reached (publish); try again later.
    Busy,
    /// -6: the KV quota would be exceeded.
    NoSpace,
    /// -7: handle limit reached (timers, subscriptions, watches).
    TooMany,
    /// -8: payload, key or transaction larger than the limits.
    TooLarge,
    /// -9: I2C/SPI bus error.
    Bus,
    /// -10: I2C: the address or a data byte was not acknowledged.
    NoAcknowledge,
    /// -11: I2C: arbitration lost.
    ArbitrationLoss,
    /// -12: the device or storage failed on the host.
    Io,
    /// -13: the host cannot do this.
    Unsupported,
    /// A negative code this SDK does not know (from a newer host).
    Unknown(i32),
}

impl Error {
    /// The error for a negative return code.
    pub const fn from_code(code: i32) -> Error {
        match code {
            -1 => Error::NotPermitted,
            -2 => Error::NotFound,
            -3 => Error::InvalidArgument,
            -4 => Error::BadHandle,
            -5 => Error::Busy,
            -6 => Error::NoSpace,
            -7 => Error::TooMany,
            -8 => Error::TooLarge,
            -9 => Error::Bus,
            -10 => Error::NoAcknowledge,
            -11 => Error::ArbitrationLoss,
            -12 => Error::Io,
            -13 => Error::Unsupported,
            other => Error::Unknown(other),
        }
    }

    /// The ABI's numeric code.
    pub const fn code(self) -> i32 {
        match self {
            Error::NotPermitted => -1,
            Error::NotFound => -2,
            Error::InvalidArgument => -3,
            Error::BadHandle => -4,
            Error::Busy => -5,
            Error::NoSpace => -6,
            Error::TooMany => -7,
            Error::TooLarge => -8,
            Error::Bus => -9,
            Error::NoAcknowledge => -10,
            Error::ArbitrationLoss => -11,
            Error::Io => -12,
            Error::Unsupported => -13,
            Error::Unknown(code) => code,
        }
    }

    /// The ABI's name (`NOT_PERMITTED`, ...), as the host's logs and docs spell it.
    pub const fn name(self) -> &'static str {
        match self {
            Error::NotPermitted => "NOT_PERMITTED",
            Error::NotFound => "NOT_FOUND",
            Error::InvalidArgument => "INVALID_ARGUMENT",
            Error::BadHandle => "BAD_HANDLE",
            Error::Busy => "BUSY",
            Error::NoSpace => "NO_SPACE",
            Error::TooMany => "TOO_MANY",
            Error::TooLarge => "TOO_LARGE",
            Error::Bus => "BUS",
            Error::NoAcknowledge => "NO_ACKNOWLEDGE",
            Error::ArbitrationLoss => "ARBITRATION_LOSS",
            Error::Io => "IO",
            Error::Unsupported => "UNSUPPORTED",
            Error::Unknown(_) => "UNKNOWN",
        }
    }

    /// Splits a raw return value: `>= 0` is the result, `< 0` an error.
    #[inline]
    pub const fn check(ret: i32) -> Result<u32> {
        if ret < 0 {
            Err(Error::from_code(ret))
        } else {
            Ok(ret as u32)
        }
    }
}

impl fmt::Display for Error {
    /// The ABI name, so a log line matches the documentation: `NO_ACKNOWLEDGE`, `error -42`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unknown(code) => write!(f, "error {code}"),
            other => f.write_str(other.name()),
        }
    }
}

impl core::error::Error for Error {}

impl embedded_hal::i2c::Error for Error {
    fn kind(&self) -> embedded_hal::i2c::ErrorKind {
        use embedded_hal::i2c::{ErrorKind, NoAcknowledgeSource};
        match self {
            Error::Bus => ErrorKind::Bus,
            Error::ArbitrationLoss => ErrorKind::ArbitrationLoss,
            // The host does not say whether the address or a data byte was refused.
            Error::NoAcknowledge => ErrorKind::NoAcknowledge(NoAcknowledgeSource::Unknown),
            _ => ErrorKind::Other,
        }
    }
}

impl embedded_hal::spi::Error for Error {
    /// SPI has no kind matching any host code (`BUS`, `IO` are not overruns or mode faults).
    fn kind(&self) -> embedded_hal::spi::ErrorKind {
        embedded_hal::spi::ErrorKind::Other
    }
}

impl embedded_hal::digital::Error for Error {
    fn kind(&self) -> embedded_hal::digital::ErrorKind {
        embedded_hal::digital::ErrorKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for code in -14..0 {
            assert_eq!(Error::from_code(code).code(), code);
        }
        assert_eq!(Error::check(7), Ok(7));
        assert_eq!(Error::check(-10), Err(Error::NoAcknowledge));
        assert_eq!(Error::from_code(-14), Error::Unknown(-14));
    }
}
