//! The simulated device set (`edge-agent --devices sim`), so demos and tests run anywhere:
//!
//! - I2C bus `i2c-1` with a BME280-compatible sensor at 0x76 whose temperature drifts between
//!   18 and 30 °C (a 40 s sine starting at 24 °C, rising), at 1013 hPa and 45 %RH. It answers
//!   the register protocol the datasheet defines (chip id, soft reset, calibration blocks,
//!   control registers, the data burst), so unmodified drivers such as the `bme280` crate work.
//! - GPIO line 17, an output (an LED: it logs every change), and line 27, an input (a button
//!   that toggles every 3 s).
//! - SPI device `spidev0.0`, a loopback: what is written is read back.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use super::{DeviceError, Devices, EdgeSink, GpioPin, WatchGuard};
use embedded_hal::i2c::{ErrorKind, ErrorType, I2c, NoAcknowledgeSource, Operation};

/// Address of the simulated BME280 (SDO to ground: the driver's "primary" address).
pub const BME280_ADDRESS: u8 = 0x76;
/// The simulated LED's line.
pub const LED_PIN: u32 = 17;
/// The simulated button's line.
pub const BUTTON_PIN: u32 = 27;
/// How often the button toggles.
pub const BUTTON_PERIOD: Duration = Duration::from_secs(3);
/// Period of the temperature drift.
pub const DRIFT_PERIOD: Duration = Duration::from_secs(40);

/// The simulated device set.
pub fn devices() -> Devices {
    let origin = Instant::now();
    let mut d = Devices::none();
    d.add_i2c("i2c-1", SimI2c::new(origin));
    d.add_spi("spidev0.0", Loopback);
    d.add_gpio(LED_PIN, Led { high: false });
    d.add_gpio(BUTTON_PIN, Button { origin });
    d
}

/// Temperature in °C at `t` after start: 24 + 6·sin(2πt/40 s).
pub fn temperature_at(t: Duration) -> f64 {
    let phase = t.as_secs_f64() / DRIFT_PERIOD.as_secs_f64() * std::f64::consts::TAU;
    24.0 + 6.0 * phase.sin()
}

// Calibration words of a real part (the datasheet's worked example values).
const T: (u16, i16, i16) = (27504, 26435, -1000);
const P: [i64; 9] = [36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000];
const H: (u8, i16, u8, i16, i16, i8) = (75, 362, 0, 324, 50, 30);

/// A BME280 on an I2C bus: a 256-byte register file behind the datasheet's protocol.
#[derive(Debug)]
pub struct SimI2c {
    origin: Instant,
    regs: [u8; 256],
    pointer: u8,
}

impl SimI2c {
    fn new(origin: Instant) -> SimI2c {
        let mut s = SimI2c {
            origin,
            regs: [0; 256],
            pointer: 0,
        };
        s.reset();
        s
    }

    fn reset(&mut self) {
        self.regs = [0; 256];
        self.regs[0xD0] = 0x60; // chip id
        let mut calib = Vec::with_capacity(26);
        calib.extend(T.0.to_le_bytes());
        calib.extend(T.1.to_le_bytes());
        calib.extend(T.2.to_le_bytes());
        calib.extend((P[0] as u16).to_le_bytes());
        for p in &P[1..] {
            calib.extend((*p as i16).to_le_bytes());
        }
        calib.push(0);
        calib.push(H.0);
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
        let celsius = temperature_at(self.origin.elapsed());
        let adc_t = raw_temperature(celsius);
        let t_fine = t_fine(adc_t);
        let adc_p = invert(|raw| -pressure_pa(raw, t_fine), -101_325.0);
        let adc_h = invert(|raw| humidity(raw, t_fine), 45.0);
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
        let mut pairs = std::iter::once(reg).chain(data.iter().skip(1).step_by(2).copied());
        let values = data.iter().step_by(2);
        for value in values {
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

/// Errors of the simulated bus: only a wrong address (no device answers).
#[derive(Debug, Clone, Copy)]
pub struct SimError(ErrorKind);

impl embedded_hal::i2c::Error for SimError {
    fn kind(&self) -> ErrorKind {
        self.0
    }
}

impl ErrorType for SimI2c {
    type Error = SimError;
}

impl I2c for SimI2c {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        if address != BME280_ADDRESS {
            return Err(SimError(ErrorKind::NoAcknowledge(
                NoAcknowledgeSource::Address,
            )));
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

/// SPI loopback: reads return what the same transfer wrote (zeros for plain reads).
#[derive(Debug)]
pub struct Loopback;

impl embedded_hal::spi::ErrorType for Loopback {
    type Error = Infallible;
}

impl embedded_hal::spi::SpiDevice for Loopback {
    fn transaction(
        &mut self,
        operations: &mut [embedded_hal::spi::Operation<'_, u8>],
    ) -> Result<(), Infallible> {
        use embedded_hal::spi::Operation as Op;
        for op in operations {
            match op {
                Op::Read(buf) => buf.fill(0),
                Op::Write(_) | Op::TransferInPlace(_) | Op::DelayNs(_) => {}
                Op::Transfer(read, write) => {
                    for (i, r) in read.iter_mut().enumerate() {
                        *r = write.get(i).copied().unwrap_or(0);
                    }
                }
            }
        }
        Ok(())
    }
}

/// The LED on line 17: an output that logs its changes.
#[derive(Debug)]
struct Led {
    high: bool,
}

impl GpioPin for Led {
    fn read(&mut self) -> Result<bool, DeviceError> {
        Ok(self.high)
    }

    fn write(&mut self, high: bool) -> Result<(), DeviceError> {
        if high != self.high {
            tracing::info!(pin = LED_PIN, level = u8::from(high), "sim: LED changed");
        }
        self.high = high;
        Ok(())
    }

    fn watch(&mut self, _: EdgeSink) -> Result<WatchGuard, DeviceError> {
        Err(DeviceError::Unsupported)
    }
}

/// The button on line 27: an input that toggles every [`BUTTON_PERIOD`], starting released.
#[derive(Debug)]
struct Button {
    origin: Instant,
}

impl Button {
    fn level_at(&self, at: Instant) -> bool {
        let n = at.duration_since(self.origin).as_millis() / BUTTON_PERIOD.as_millis();
        n % 2 == 1
    }
}

impl GpioPin for Button {
    fn read(&mut self) -> Result<bool, DeviceError> {
        Ok(self.level_at(Instant::now()))
    }

    fn write(&mut self, _: bool) -> Result<(), DeviceError> {
        Err(DeviceError::Unsupported)
    }

    fn watch(&mut self, mut sink: EdgeSink) -> Result<WatchGuard, DeviceError> {
        let origin = self.origin;
        let task = tokio::spawn(async move {
            let button = Button { origin };
            loop {
                let since = origin.elapsed().as_millis() % BUTTON_PERIOD.as_millis();
                let wait = BUTTON_PERIOD - Duration::from_millis(since as u64);
                tokio::time::sleep(wait).await;
                let level = button.level_at(Instant::now() + Duration::from_millis(1));
                if !sink.offer(level) {
                    return;
                }
            }
        });
        Ok(WatchGuard::new(move || task.abort()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_regs(bus: &mut SimI2c, reg: u8, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        I2c::write_read(bus, BME280_ADDRESS, &[reg], &mut buf).unwrap();
        buf
    }

    #[test]
    fn answers_like_a_bme280_and_compensates_to_the_drift() {
        let mut bus = SimI2c::new(Instant::now());
        assert_eq!(read_regs(&mut bus, 0xD0, 1), [0x60]);
        assert_eq!(read_regs(&mut bus, 0x88, 2), 27504u16.to_le_bytes());
        // Forced mode measurement, then the burst read.
        I2c::write(&mut bus, BME280_ADDRESS, &[0xF4, 0b0010_0101]).unwrap();
        assert_eq!(read_regs(&mut bus, 0xF4, 1), [0b0010_0100], "back to sleep");
        let data = read_regs(&mut bus, 0xF7, 8);
        let adc_t =
            (i32::from(data[3]) << 12) | (i32::from(data[4]) << 4) | i32::from(data[5] >> 4);
        let adc_p =
            (i32::from(data[0]) << 12) | (i32::from(data[1]) << 4) | i32::from(data[2] >> 4);
        let adc_h = (i32::from(data[6]) << 8) | i32::from(data[7]);
        let tf = t_fine(adc_t);
        let celsius = compensate_t(tf) / 100.0;
        assert!((23.9..24.2).contains(&celsius), "{celsius}");
        let hpa = pressure_pa(adc_p, tf) / 100.0;
        assert!((1012.0..1014.5).contains(&hpa), "{hpa}");
        let rh = humidity(adc_h, tf);
        assert!((44.0..46.0).contains(&rh), "{rh}");
        assert!(
            I2c::write(&mut bus, 0x77, &[0xD0]).is_err(),
            "no device at 0x77"
        );
    }

    #[test]
    fn temperature_drifts_between_18_and_30() {
        let samples: Vec<f64> = (0..400)
            .map(|i| temperature_at(Duration::from_millis(i * 100)))
            .collect();
        let (min, max) = samples
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), t| (lo.min(*t), hi.max(*t)));
        assert!(
            (17.9..18.2).contains(&min) && (29.8..30.1).contains(&max),
            "{min} {max}"
        );
        for celsius in [18.0, 24.5, 30.0] {
            let got = compensate_t(t_fine(raw_temperature(celsius))) / 100.0;
            assert!((got - celsius).abs() < 0.02, "{celsius}: {got}");
        }
    }
}
