//! A BME280 at the register level: a 256-byte register file behind the datasheet's I2C
//! protocol (chip id 0x60 at 0xD0, soft reset at 0xE0, calibration blocks at 0x88 and 0xE1,
//! control registers 0xF2/0xF4/0xF5, the data burst at 0xF7..=0xFE), so unmodified drivers such
//! as the `bme280` crate work. The same model as the Linux agent's `devices/sim.rs`: raw
//! readings are found by inverting the datasheet's compensation formulas, so a driver computes
//! back exactly the simulated temperature, pressure and humidity.

use core::f64::consts::TAU;

use embedded_hal::i2c::{ErrorKind, ErrorType, I2c, NoAcknowledgeSource, Operation};

use super::Clock;

/// Address of the simulated BME280 (SDO to ground: the driver's "primary" address).
pub const BME280_ADDRESS: u8 = 0x76;
/// Period of the temperature drift.
pub const DRIFT_PERIOD_MS: u64 = 40_000;

/// Temperature in °C at `ms` after the sensor appeared: 24 + 6·sin(2πt/40 s).
pub fn temperature_at(ms: u64) -> f64 {
    let phase = (ms % DRIFT_PERIOD_MS) as f64 / DRIFT_PERIOD_MS as f64 * TAU;
    24.0 + 6.0 * libm::sin(phase)
}

const PRESSURE_PA: f64 = 101_325.0;
const HUMIDITY_RH: f64 = 45.0;

// Calibration words of a real part (the datasheet's worked example values).
const T: (u16, i16, i16) = (27504, 26435, -1000);
const P: [i64; 9] = [36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000];
const H: (u8, i16, u8, i16, i16, i8) = (75, 362, 0, 324, 50, 30);

/// The simulated sensor, as the only device on its bus (other addresses do not acknowledge).
#[derive(Debug)]
pub struct Bme280 {
    clock: Clock,
    origin_ms: u64,
    regs: [u8; 256],
    pointer: u8,
}

impl Bme280 {
    /// A sensor whose drift starts now.
    pub fn new(clock: Clock) -> Bme280 {
        let mut s = Bme280 {
            clock,
            origin_ms: clock(),
            regs: [0; 256],
            pointer: 0,
        };
        s.reset();
        s
    }

    fn reset(&mut self) {
        self.regs = [0; 256];
        self.regs[0xD0] = 0x60; // chip id
        let mut calib = [0u8; 26];
        calib[0..2].copy_from_slice(&T.0.to_le_bytes());
        calib[2..4].copy_from_slice(&T.1.to_le_bytes());
        calib[4..6].copy_from_slice(&T.2.to_le_bytes());
        calib[6..8].copy_from_slice(&(P[0] as u16).to_le_bytes());
        for (i, p) in P[1..].iter().enumerate() {
            calib[8 + 2 * i..10 + 2 * i].copy_from_slice(&(*p as i16).to_le_bytes());
        }
        calib[24] = 0; // reserved
        calib[25] = H.0;
        self.regs[0x88..0x88 + 26].copy_from_slice(&calib);
        let (h4, h5) = (H.3, H.4);
        let h = [
            H.1.to_le_bytes()[0],
            H.1.to_le_bytes()[1],
            H.2,
            (h4 >> 4) as u8,
            ((h4 & 0x0F) as u8) | (((h5 & 0x0F) as u8) << 4),
            (h5 >> 4) as u8,
            H.5 as u8,
        ];
        self.regs[0xE1..0xE8].copy_from_slice(&h);
    }

    /// Latches a fresh measurement into the data registers 0xF7..=0xFE.
    fn sample(&mut self) {
        let celsius = temperature_at((self.clock)().saturating_sub(self.origin_ms));
        let adc_t = raw_temperature(celsius);
        let t_fine = t_fine(adc_t);
        let adc_p = invert(|raw| -pressure_pa(raw, t_fine), -PRESSURE_PA);
        let adc_h = invert(|raw| humidity(raw, t_fine), HUMIDITY_RH);
        let bytes20 = |v: i32| [(v >> 12) as u8, (v >> 4) as u8, ((v & 0xF) << 4) as u8];
        self.regs[0xF7..0xFA].copy_from_slice(&bytes20(adc_p));
        self.regs[0xFA..0xFD].copy_from_slice(&bytes20(adc_t));
        self.regs[0xFD..0xFF].copy_from_slice(&(adc_h as u16).to_be_bytes());
    }

    fn write(&mut self, bytes: &[u8]) {
        let Some((&reg, data)) = bytes.split_first() else {
            return;
        };
        self.pointer = reg;
        // Register writes come as (address, value) pairs after the first address.
        let mut pairs = core::iter::once(reg).chain(data.iter().skip(1).step_by(2).copied());
        for value in data.iter().step_by(2) {
            let Some(r) = pairs.next() else { break };
            match (r, *value) {
                (0xE0, 0xB6) => self.reset(),
                (0xF4, v) if v & 0b11 == 0b11 => {
                    self.regs[0xF4] = v;
                    self.sample(); // normal mode: measuring continuously
                }
                (0xF4, v) if v & 0b11 != 0 => {
                    // Forced mode: one measurement, then back to sleep (mode bits 00), as on
                    // the part; drivers check the mode before the next measurement.
                    self.sample();
                    self.regs[0xF4] = v & !0b11;
                }
                (0xF2 | 0xF4 | 0xF5, v) => self.regs[r as usize] = v,
                _ => {} // read-only registers ignore writes, as on the part
            }
        }
    }

    fn read(&mut self, buf: &mut [u8]) {
        if self.pointer == 0xF7 && self.regs[0xF4] & 0b11 == 0b11 {
            self.sample(); // normal mode samples continuously
        }
        for b in buf {
            *b = self.regs[self.pointer as usize];
            self.pointer = self.pointer.wrapping_add(1);
        }
    }
}

impl ErrorType for Bme280 {
    /// The only failure is a wrong address (no device answers); both boards' buses report
    /// plain [`ErrorKind`]s so the runtime sees one error type.
    type Error = ErrorKind;
}

impl I2c for Bme280 {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), ErrorKind> {
        if address != BME280_ADDRESS {
            return Err(ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address));
        }
        for op in operations {
            match op {
                Operation::Write(bytes) => self.write(bytes),
                Operation::Read(buf) => self.read(buf),
            }
        }
        Ok(())
    }
}

/// The raw 20-bit reading that compensates to `celsius` (within 0.01 °C).
fn raw_temperature(celsius: f64) -> i32 {
    invert(|raw| compensate_t(t_fine(raw)), celsius * 100.0)
}

/// Smallest raw 20-bit value whose increasing function `f` reaches `target`.
fn invert(f: impl Fn(i32) -> f64, target: f64) -> i32 {
    let (mut lo, mut hi) = (0i32, (1 << 20) - 1);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if f(mid) < target {
            lo = mid + 1
        } else {
            hi = mid
        }
    }
    lo
}

// The datasheet's integer compensation formulas (section 4.2.3).
fn t_fine(adc_t: i32) -> i32 {
    let (t1, t2, t3) = (T.0 as i32, T.1 as i32, T.2 as i32);
    let v1 = (((adc_t >> 3) - (t1 << 1)) * t2) >> 11;
    let v2 = (((((adc_t >> 4) - t1) * ((adc_t >> 4) - t1)) >> 12) * t3) >> 14;
    v1 + v2
}

fn compensate_t(t_fine: i32) -> f64 {
    f64::from((t_fine * 5 + 128) >> 8)
}

fn pressure_pa(adc_p: i32, t_fine: i32) -> f64 {
    let mut v1 = i64::from(t_fine) - 128_000;
    let mut v2 = v1 * v1 * P[5];
    v2 += (v1 * P[4]) << 17;
    v2 += P[3] << 35;
    v1 = ((v1 * v1 * P[2]) >> 8) + ((v1 * P[1]) << 12);
    v1 = (((1i64 << 47) + v1) * P[0]) >> 33;
    if v1 == 0 {
        return 0.0;
    }
    let mut p = 1_048_576 - i64::from(adc_p);
    p = (((p << 31) - v2) * 3125) / v1;
    let v1 = (P[8] * (p >> 13) * (p >> 13)) >> 25;
    let v2 = (P[7] * p) >> 19;
    p = ((p + v1 + v2) >> 8) + (P[6] << 4);
    p as f64 / 256.0
}

fn humidity(adc_h: i32, t_fine: i32) -> f64 {
    // The datasheet's 32-bit formula, in 64 bits (its intermediates overflow i32 when the
    // search probes raw values far from the answer).
    let (h1, h2, h3, h4, h5, h6) = (
        i64::from(H.0),
        i64::from(H.1),
        i64::from(H.2),
        i64::from(H.3),
        i64::from(H.4),
        i64::from(H.5),
    );
    let adc_h = i64::from(adc_h);
    let mut v = i64::from(t_fine) - 76_800;
    v = ((((adc_h << 14) - (h4 << 20) - (h5 * v)) + 16_384) >> 15)
        * (((((((v * h6) >> 10) * (((v * h3) >> 11) + 32_768)) >> 10) + 2_097_152) * h2 + 8192)
            >> 14);
    v -= ((((v >> 15) * (v >> 15)) >> 7) * h1) >> 4;
    v = v.clamp(0, 419_430_400);
    (v >> 12) as f64 / 1024.0
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use core::sync::atomic::{AtomicU64, Ordering};
    use std::vec;
    use std::vec::Vec;

    static NOW: AtomicU64 = AtomicU64::new(0);
    fn now() -> u64 {
        NOW.load(Ordering::Relaxed)
    }

    struct NoDelay;
    impl embedded_hal::delay::DelayNs for NoDelay {
        fn delay_ns(&mut self, _: u32) {}
    }

    fn read_regs(bus: &mut Bme280, reg: u8, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        I2c::write_read(bus, BME280_ADDRESS, &[reg], &mut buf).unwrap();
        buf
    }

    #[test]
    fn answers_like_a_bme280() {
        let mut bus = Bme280::new(now);
        assert_eq!(read_regs(&mut bus, 0xD0, 1), [0x60]);
        assert_eq!(read_regs(&mut bus, 0x88, 2), 27504u16.to_le_bytes());
        I2c::write(&mut bus, BME280_ADDRESS, &[0xF4, 0b0010_0101]).unwrap();
        assert_eq!(read_regs(&mut bus, 0xF4, 1), [0b0010_0100], "back to sleep");
        assert_eq!(
            I2c::write(&mut bus, 0x77, &[0xD0]),
            Err(ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address)),
            "no device at 0x77"
        );
    }

    /// The `bme280` driver the guests use reads the drift through this bus.
    #[test]
    fn the_bme280_crate_reads_the_drift() {
        // Only this test moves the clock; the other tests do not read it.
        NOW.store(1_000, Ordering::Relaxed);
        let mut sensor = bme280::i2c::BME280::new_primary(Bme280::new(now));
        sensor.init(&mut NoDelay).unwrap();
        let m = sensor.measure(&mut NoDelay).unwrap();
        assert!((23.9..24.2).contains(&m.temperature), "{}", m.temperature);
        assert!(
            (101_200.0..101_450.0).contains(&m.pressure),
            "{}",
            m.pressure
        );
        assert!((44.0..46.0).contains(&m.humidity), "{}", m.humidity);
        NOW.store(11_000, Ordering::Relaxed); // a quarter period later: the maximum
        let m = sensor.measure(&mut NoDelay).unwrap();
        assert!((29.8..30.1).contains(&m.temperature), "{}", m.temperature);
    }

    #[test]
    fn temperature_drifts_between_18_and_30() {
        let (mut min, mut max) = (f64::MAX, f64::MIN);
        for i in 0..400 {
            let t = temperature_at(i * 100);
            min = min.min(t);
            max = max.max(t);
        }
        assert!((17.9..18.2).contains(&min) && (29.8..30.1).contains(&max));
        for celsius in [18.0, 24.5, 30.0] {
            let got = compensate_t(t_fine(raw_temperature(celsius))) / 100.0;
            assert!((got - celsius).abs() < 0.02, "{celsius}: {got}");
        }
    }
}
