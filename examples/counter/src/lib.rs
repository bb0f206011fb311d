//! Counts in the persistent KV store: reads `count` (0 if absent), then every
//! `config.interval` (default 1s) increments it, stores it and logs `count=N`. The count
//! survives restarts, updates and agent crashes.
#![no_std]

use wasmfleet_sdk::{App, Timer, config, error, info, kv};

struct Counter {
    count: u64,
}

impl App for Counter {
    fn start() -> Self {
        let count = kv::get_u64("count").unwrap_or_else(|e| {
            error!("kv get count: {e}; starting from 0");
            None
        });
        Timer::every(config::duration_ms("interval", 1000)).expect("timer");
        Counter {
            count: count.unwrap_or(0),
        }
    }

    fn on_timer(&mut self, _: Timer) {
        let next = self.count + 1;
        match kv::set_u64("count", next) {
            Ok(()) => {
                self.count = next;
                info!("count={next}");
            }
            // Not counted, so the next tick stores the same number again.
            Err(e) => error!("kv set count: {e}"),
        }
    }
}

wasmfleet_sdk::app!(Counter);
