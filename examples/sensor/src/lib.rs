//! Reads a BME280 on I2C bus `i2c-1` (address 0x76) every `config.interval` and publishes the
//! temperature as text with one decimal (`23.4`) to `sensors/<node>/temp`. Bus errors are
//! logged and retried on the next tick, re-initialising the sensor.
#![no_std]

use bme280::i2c::BME280;
use wasmfleet_sdk::{App, Delay, Error, Fixed, StrBuf, Timer, config, error, i2c::I2c, info, mqtt};

struct Sensor {
    bme: BME280<I2c>,
    ready: bool, // init succeeded and no error since
    topic: StrBuf<96>,
}

impl App for Sensor {
    fn start() -> Self {
        let mut buf = [0u8; 64];
        let node = config::node(&mut buf).unwrap_or("unknown");
        let i2c = I2c::open("i2c-1").unwrap_or_else(|e| {
            error!("open i2c-1: {e}");
            wasmfleet_sdk::exit(1)
        });
        Timer::every(config::duration_ms("interval", 1000)).expect("timer");
        let topic = StrBuf::format(format_args!("sensors/{node}/temp"));
        let bme = BME280::new_primary(i2c);
        Sensor {
            bme,
            ready: false,
            topic,
        }
    }

    fn on_timer(&mut self, _: Timer) {
        if !self.ready {
            if let Err(e) = self.bme.init(&mut Delay) {
                return report("bme280 init", e);
            }
            self.ready = true;
        }
        match self.bme.measure(&mut Delay) {
            Ok(m) => {
                let text: StrBuf<16> =
                    StrBuf::format(format_args!("{}", Fixed::new(m.temperature, 1)));
                info!("temp={text}C");
                if let Err(e) = mqtt::publish(&self.topic, text.as_bytes()) {
                    error!("publish {}: {e}", self.topic);
                }
            }
            Err(e) => {
                self.ready = false;
                report("bme280 measure", e);
            }
        }
    }
}

fn report(what: &str, e: bme280::Error<Error>) {
    match e {
        bme280::Error::Bus(e) => error!("{what}: i2c error {e}"),
        other => error!("{what}: {other:?}"),
    }
}

wasmfleet_sdk::app!(Sensor);
