//! Kubernetes-style byte quantities: `16Mi`, `1Gi`, `512Ki`, `64M`, `1000`.
//!
//! One grammar for every place a user writes a size (manifests, `wasmfleet run --memory`,
//! `edge-agent --memory`), so `1G` means the same everywhere.

/// Why a text is not a byte quantity. Messages quote the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// No leading number.
    #[error("{0:?} is not a quantity: expected a number such as 16Mi")]
    NotANumber(String),
    /// A suffix other than the Kubernetes ones.
    #[error("{text:?} has an unknown unit {unit:?}: use Ki, Mi, Gi, Ti, k, M, G or T")]
    Unit {
        /// The whole text.
        text: String,
        /// The suffix found.
        unit: String,
    },
    /// More than `u64::MAX` bytes.
    #[error("{0:?} is too large")]
    TooLarge(String),
}

/// Parses a byte quantity. Binary suffixes (`Ki`, `Mi`, `Gi`, `Ti`) are powers of 1024,
/// decimal ones (`k`, `M`, `G`, `T`) powers of 1000, as in Kubernetes.
pub fn parse_bytes(text: &str) -> Result<u64, QuantityError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    if digits.is_empty() {
        return Err(QuantityError::NotANumber(text.into()));
    }
    let multiplier: u64 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        other => {
            return Err(QuantityError::Unit {
                text: text.into(),
                unit: other.into(),
            });
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| QuantityError::TooLarge(text.into()))
}

/// Formats bytes the way a user would write them: in the largest binary unit, exact where
/// possible (`16Mi`), else with one decimal (`11.8Gi`).
pub fn format_bytes(bytes: u64) -> String {
    for (suffix, unit) in [
        ("Ti", 1u64 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ] {
        if bytes >= unit {
            if bytes.is_multiple_of(unit) {
                return format!("{}{suffix}", bytes / unit);
            }
            return format!("{:.1}{suffix}", bytes as f64 / unit as f64);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_and_decimal_units() {
        assert_eq!(parse_bytes("16Mi"), Ok(16 << 20));
        assert_eq!(parse_bytes("1Gi"), Ok(1 << 30));
        assert_eq!(parse_bytes("512Ki"), Ok(512 << 10));
        assert_eq!(parse_bytes("64M"), Ok(64_000_000));
        assert_eq!(parse_bytes("1000"), Ok(1000));
    }

    #[test]
    fn rejects_garbage_with_the_reason() {
        let err = |t: &str| parse_bytes(t).unwrap_err().to_string();
        assert!(err("Mi").contains("expected a number"));
        assert!(err("16MB").contains("unknown unit \"MB\""));
        assert!(err("99999999999Ti").contains("too large"));
        assert!(err("").contains("expected a number"));
    }

    #[test]
    fn formats_round_numbers_exactly() {
        assert_eq!(format_bytes(16 << 20), "16Mi");
        assert_eq!(format_bytes(3 << 30), "3Gi");
        assert_eq!(format_bytes(1000), "1000");
        assert_eq!(format_bytes(12_341_828 << 10), "11.8Gi");
        assert_eq!(parse_bytes(&format_bytes(48 << 10)), Ok(48 << 10));
    }
}
