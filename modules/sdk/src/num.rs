//! Decimal text to and from floats without core's float formatting and parsing, which add
//! about 18 KB and 20 KB to a module (code and tables): too much on a 256 KiB
//! microcontroller just to print or read a sensor value. Exact to the last digit shown;
//! [`parse_f32`] may differ from `str::parse` in the last bit, not more.

use core::fmt;

/// Displays `value` with exactly `decimals` digits after the point (at most 9), rounding
/// half away from zero: `Fixed::new(23.45, 1)` is `23.5`, `Fixed::new(-0.04, 1)` is `-0.0`.
/// NaN shows as `NaN`, infinities as `inf`/`-inf`; beyond ±9.2e18 it saturates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fixed {
    value: f64,
    decimals: u8,
}

impl Fixed {
    /// `value` with `decimals` digits after the point (clamped to 9).
    pub fn new(value: impl Into<f64>, decimals: u8) -> Fixed {
        Fixed {
            value: value.into(),
            decimals: decimals.min(9),
        }
    }
}

impl fmt::Display for Fixed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.value;
        if v.is_nan() {
            return f.write_str("NaN");
        }
        if v.is_infinite() {
            return f.write_str(if v < 0.0 { "-inf" } else { "inf" });
        }
        let scale = 10u64.pow(self.decimals.into());
        let scaled = v * scale as f64;
        // `as` truncates toward zero (and saturates), so add the half first.
        let rounded = if v < 0.0 { scaled - 0.5 } else { scaled + 0.5 } as i64;
        let abs = rounded.unsigned_abs();
        let sign = if v < 0.0 { "-" } else { "" };
        let (int, frac) = (abs / scale, abs % scale);
        if self.decimals == 0 {
            write!(f, "{sign}{int}")
        } else {
            let width = self.decimals.into();
            write!(f, "{sign}{int}.{frac:0width$}")
        }
    }
}

/// Parses `[+-]digits[.digits][(e|E)[+-]digits]` (surrounding whitespace allowed), e.g.
/// `25`, `-3.5`, `.5`, `1e3`. `None` for anything else (including `inf` and `NaN`).
pub fn parse_f32(text: &str) -> Option<f32> {
    parse_f64(text).map(|v| v as f32)
}

/// [`parse_f32`], in double precision.
pub fn parse_f64(text: &str) -> Option<f64> {
    let s = text.trim().as_bytes();
    let (negative, s) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, s),
    };
    // Up to 19 significant digits in a u64; further integer digits only scale it.
    let (mut mantissa, mut exp10, mut digits, mut i) = (0u64, 0i32, 0, 0);
    let mut seen_point = false;
    while let Some(&c) = s.get(i) {
        match c {
            b'0'..=b'9' => {
                digits += 1;
                if mantissa < 1_000_000_000_000_000_000 {
                    mantissa = mantissa * 10 + u64::from(c - b'0');
                    exp10 -= i32::from(seen_point);
                } else {
                    exp10 += i32::from(!seen_point);
                }
            }
            b'.' if !seen_point => seen_point = true,
            _ => break,
        }
        i += 1;
    }
    if digits == 0 {
        return None;
    }
    if let Some(b'e' | b'E') = s.get(i) {
        let e = core::str::from_utf8(&s[i + 1..]).ok()?;
        exp10 = exp10.checked_add(e.parse::<i32>().ok()?)?;
    } else if i != s.len() {
        return None;
    }
    let magnitude = scale(mantissa as f64, exp10);
    Some(if negative { -magnitude } else { magnitude })
}

/// `m * 10^exp10`, by repeated multiplication (core has no `powi`).
fn scale(mut m: f64, exp10: i32) -> f64 {
    if m == 0.0 {
        return 0.0;
    }
    // Past these, every f64 result is infinite or zero.
    let mut e = exp10.clamp(-400, 400);
    while e > 0 {
        let step = e.min(22); // 1e22 is the largest exact power of ten in f64
        m *= POW10[step as usize];
        e -= step;
    }
    while e < 0 {
        let step = (-e).min(22);
        m /= POW10[step as usize];
        e += step;
    }
    m
}

const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: f32, d: u8) -> String {
        Fixed::new(v, d).to_string()
    }

    #[test]
    fn formats() {
        assert_eq!(s(23.44, 1), "23.4");
        assert_eq!(s(23.45, 1), "23.5");
        assert_eq!(s(23.0, 1), "23.0");
        assert_eq!(s(0.05, 1), "0.1");
        assert_eq!(s(-0.04, 1), "-0.0");
        assert_eq!(s(-12.34, 2), "-12.34");
        assert_eq!(s(-40.0, 1), "-40.0");
        assert_eq!(s(1.5, 0), "2");
        assert_eq!(s(0.001, 3), "0.001");
        assert_eq!(s(f32::NAN, 1), "NaN");
        assert_eq!(s(f32::NEG_INFINITY, 1), "-inf");
    }

    #[test]
    fn parses() {
        for text in [
            "25",
            "-3.5",
            "+0.25",
            ".5",
            "5.",
            "1e3",
            "2.5E-3",
            " 23.4 ",
            "0",
            "-0.0",
            "123456789012345678901234567890",
            "0.000000000000000000000000001234",
            "3.4028235e38",
            "1e-45",
            "21.7",
            "99.99",
            "-40.05",
        ] {
            let want: f32 = text.trim().parse().unwrap();
            assert_eq!(parse_f32(text), Some(want), "{text}");
        }
        for text in [
            "", "-", ".", "e3", "1e", "1x", "1.2.3", "inf", "NaN", "1 2", "--1",
        ] {
            assert_eq!(parse_f32(text), None, "{text}");
        }
        assert_eq!(parse_f32("1e999"), Some(f32::INFINITY));
        assert_eq!(parse_f32("1e-999"), Some(0.0));
    }
}
