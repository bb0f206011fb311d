//! Kubernetes-style quantities: bytes (`16Mi`, `1Gi`, `64M`), CPU (`200m`, `0.5`, `2`) and
//! durations (`500ms`, `30s`, `24h`).
//!
//! One grammar for every place a user writes one (manifests, `wasmfleet run --memory`,
//! `edge-agent --memory`, `--log-max-age`), so `1G` means the same everywhere.

use std::time::Duration;

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

pub use wasmfleet_node::format_bytes;

/// Parses a CPU quantity into millicores, as Kubernetes: `200m`, `0.5` (500), `2` (2000).
pub fn parse_cpu_millis(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let bad = || format!("{text:?} is not a CPU quantity such as 200m, 0.5 or 2");
    let millis = if let Some(m) = t.strip_suffix('m') {
        m.parse::<u64>().map_err(|_| bad())?
    } else {
        let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
        if frac.len() > 3 || (whole.is_empty() && frac.is_empty()) {
            return Err(bad());
        }
        let digits = |s: &str| s.is_empty() || s.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || !digits(frac) {
            return Err(bad());
        }
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad())?
        };
        let frac: u64 = format!("{frac:0<3}").parse().map_err(|_| bad())?;
        whole
            .checked_mul(1000)
            .and_then(|w| w.checked_add(frac))
            .ok_or_else(bad)?
    };
    match u32::try_from(millis) {
        Ok(0) => Err(format!("{text:?} is no CPU at all: use at least 1m")),
        Ok(m) => Ok(m),
        Err(_) => Err(format!("{text:?} is too large")),
    }
}

/// Formats millicores the way Kubernetes prints them: `250m`, `2`.
pub fn format_cpu_millis(millis: u32) -> String {
    if millis.is_multiple_of(1000) {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    }
}

/// Parses `500ms`, `30s`, `5m`, `24h`, `7d` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 30s, 5m or 24h"))?;
    let ms = match unit {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        other => {
            return Err(format!(
                "{text:?} has an unknown unit {other:?}: use ms, s, m, h or d"
            ));
        }
    };
    ms.map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is too long"))
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

    #[test]
    fn cpu_quantities_as_kubernetes_writes_them() {
        assert_eq!(parse_cpu_millis("200m"), Ok(200));
        assert_eq!(parse_cpu_millis("0.5"), Ok(500));
        assert_eq!(parse_cpu_millis(".25"), Ok(250));
        assert_eq!(parse_cpu_millis("2"), Ok(2000));
        assert_eq!(parse_cpu_millis("1.5"), Ok(1500));
        for bad in ["", "m", "0", "0m", "1.2345", "-1", "2 cores", "1e3"] {
            assert!(parse_cpu_millis(bad).is_err(), "{bad:?}");
        }
        assert_eq!(format_cpu_millis(250), "250m");
        assert_eq!(format_cpu_millis(2000), "2");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(
            parse_duration("2 weeks")
                .unwrap_err()
                .contains("unknown unit")
        );
    }
}
