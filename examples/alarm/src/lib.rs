//! Subscribes to `sensors/+/temp` and drives GPIO 17 high while readings are above
//! `config.threshold` (default 25.0), logging `alarm on`/`alarm off` on each change.
#![no_std]

use wasmfleet_sdk::embedded_hal::digital::PinState;
use wasmfleet_sdk::{App, Message, config, error, exit, gpio::Output, info, mqtt, num, warn};

struct Alarm {
    threshold: f32,
    pin: Output,
}

impl App for Alarm {
    fn start() -> Self {
        let threshold = config::f32("threshold", 25.0);
        let pin = Output::new(17, PinState::Low).unwrap_or_else(|e| {
            error!("gpio 17: {e}");
            exit(1)
        });
        if let Err(e) = mqtt::subscribe("sensors/+/temp") {
            error!("subscribe: {e}");
            exit(1)
        }
        Alarm { threshold, pin }
    }

    fn on_message(&mut self, msg: Message) {
        let mut buf = [0u8; 32];
        let text = core::str::from_utf8(msg.payload(&mut buf)).unwrap_or("");
        let Some(temp) = num::parse_f32(text) else {
            return warn!(
                "{}: {text:?} is not a temperature",
                msg.topic(&mut [0; 128])
            );
        };
        let on = match self.pin.level() {
            PinState::Low if temp > self.threshold => true,
            PinState::High if temp < self.threshold => false,
            _ => return, // no crossing
        };
        match self.pin.write(on) {
            Ok(()) => info!("alarm {}", if on { "on" } else { "off" }),
            Err(e) => error!("gpio 17: {e}"),
        }
    }
}

wasmfleet_sdk::app!(Alarm);
