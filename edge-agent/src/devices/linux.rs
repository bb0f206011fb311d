//! Real hardware (`edge-agent --devices linux`): I2C buses (`/dev/i2c-N`) and SPI devices
//! (`/dev/spidevB.C`) through `linux-embedded-hal`, GPIO lines of a character device
//! (`/dev/gpiochipN`) through `gpiocdev`.
//!
//! Buses are found in `/dev` unless named with `--i2c NAME=PATH` / `--spi NAME=PATH`; GPIO
//! lines are offered only when listed (`--gpio-lines 17,27`), since driving an arbitrary line
//! of a board can damage what is wired to it. A line is requested from the kernel when a module
//! first uses it: as an input to read or watch, as an output to write.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{DeviceError, Devices, EdgeSink, GpioPin, WatchGuard, lock};
use gpiocdev::Request;
use gpiocdev::line::{EdgeDetection, EdgeKind, Value};

/// What `--devices linux` offers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LinuxOptions {
    /// I2C buses by name; empty: every `/dev/i2c-*`, named after the file.
    pub i2c: Vec<(String, PathBuf)>,
    /// SPI devices by name; empty: every `/dev/spidev*`, named after the file.
    pub spi: Vec<(String, PathBuf)>,
    /// The GPIO character device.
    pub gpio_chip: PathBuf,
    /// GPIO lines offered to modules, by offset on `gpio_chip`.
    pub gpio_lines: Vec<u32>,
}

/// Opens the devices; an error names the device that could not be opened and why.
pub fn devices(opts: &LinuxOptions) -> Result<Devices, String> {
    let mut d = Devices::none();
    let found = |prefix: &str| discover(Path::new("/dev"), prefix);
    let i2c = match opts.i2c.is_empty() {
        true => found("i2c-"),
        false => opts.i2c.clone(),
    };
    let i2c_names: Vec<String> = i2c.iter().map(|(n, _)| n.clone()).collect();
    for (name, path) in i2c {
        let bus = linux_embedded_hal::I2cdev::new(&path)
            .map_err(|e| format!("I2C bus {name} ({}): {e}", path.display()))?;
        d.add_i2c(&name, bus);
    }
    let spi = match opts.spi.is_empty() {
        true => found("spidev"),
        false => opts.spi.clone(),
    };
    let spi_names: Vec<String> = spi.iter().map(|(n, _)| n.clone()).collect();
    for (name, path) in spi {
        let dev = linux_embedded_hal::SpidevDevice::open(&path)
            .map_err(|e| format!("SPI device {name} ({}): {e}", path.display()))?;
        d.add_spi(&name, dev);
    }
    // One namespace per node: the scheduler matches capabilities by name.
    let mut names: Vec<&String> = i2c_names.iter().chain(&spi_names).collect();
    names.sort();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("{} names both an I2C bus and an SPI device", w[0]));
    }
    if !opts.gpio_lines.is_empty() {
        let chip = gpiocdev::Chip::from_path(&opts.gpio_chip)
            .map_err(|e| format!("GPIO chip {}: {e}", opts.gpio_chip.display()))?;
        let lines = chip
            .info()
            .map_err(|e| format!("GPIO chip {}: {e}", opts.gpio_chip.display()))?
            .num_lines;
        for &line in &opts.gpio_lines {
            if line >= lines {
                return Err(format!(
                    "GPIO line {line}: {} has only {lines} lines",
                    opts.gpio_chip.display()
                ));
            }
            d.add_gpio(line, Line::new(&opts.gpio_chip, line));
        }
    }
    Ok(d)
}

/// Device files in `dir` whose names start with `prefix`, named after the file, sorted.
fn discover(dir: &Path, prefix: &str) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.starts_with(prefix).then(|| (name, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// How a line is currently requested from the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Input,
    Output,
    Watching(EdgeDetection),
}

/// A module watching a line.
struct Watcher {
    id: u64,
    sink: EdgeSink,
}

/// The thread that reads a watched line's edges, and its stop flag.
type Reader = (Arc<AtomicBool>, std::thread::JoinHandle<()>);

/// One GPIO line of a chip. While watched, one reader thread takes the kernel's edge events
/// and hands each to every watcher that wants it (two replicas on one node can watch the same
/// button); the line stays requested until a module writes it.
struct Line {
    chip: PathBuf,
    offset: u32,
    request: Option<(Arc<Request>, Mode)>,
    watchers: Arc<Mutex<Vec<Watcher>>>,
    reader: Option<Reader>,
    next_watcher: u64,
}

impl Line {
    fn new(chip: &Path, offset: u32) -> Line {
        Line {
            chip: chip.to_path_buf(),
            offset,
            request: None,
            watchers: Arc::default(),
            reader: None,
            next_watcher: 0,
        }
    }

    /// The line requested in `mode` (re-requested if it was in another: a reader thread is
    /// stopped first, so the kernel releases the line, and its watchers get no more edges).
    fn requested(&mut self, mode: Mode, initial: bool) -> Result<Arc<Request>, DeviceError> {
        if let Some((req, m)) = &self.request
            && *m == mode
        {
            return Ok(req.clone());
        }
        if let Some((stop, thread)) = self.reader.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = thread.join(); // within one wait (200 ms)
            lock(&self.watchers).clear();
        }
        self.request = None; // released before it is requested again
        let mut b = Request::builder();
        b.on_chip(&self.chip)
            .with_consumer("wasmfleet")
            .with_line(self.offset);
        match mode {
            Mode::Input => b.as_input(),
            Mode::Output => b.as_output(value(initial)),
            Mode::Watching(edges) => b.as_input().with_edge_detection(edges),
        };
        let req = Arc::new(b.request().map_err(|e| {
            tracing::warn!(chip = %self.chip.display(), line = self.offset, error = %e, "GPIO request failed");
            DeviceError::Io
        })?);
        self.request = Some((req.clone(), mode));
        Ok(req)
    }

    /// Starts the reader thread of a watched line.
    fn start_reader(&mut self, req: Arc<Request>) -> Result<(), DeviceError> {
        let stop = Arc::new(AtomicBool::new(false));
        let (stopped, watchers) = (stop.clone(), self.watchers.clone());
        let thread = std::thread::Builder::new()
            .name(format!("gpio-{}", self.offset))
            .stack_size(64 << 10)
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    match req.wait_edge_event(Duration::from_millis(200)) {
                        Ok(false) => {}
                        Ok(true) => match req.read_edge_event() {
                            Ok(ev) => deliver(&watchers, ev.kind == EdgeKind::Rising),
                            Err(_) => break,
                        },
                        Err(_) => break,
                    }
                }
            })
            .map_err(|_| DeviceError::Io)?;
        self.reader = Some((stop, thread));
        Ok(())
    }
}

/// Hands an edge to every watcher that wants it; a full queue drops it (counted, warned).
fn deliver(watchers: &Mutex<Vec<Watcher>>, level: bool) {
    for w in lock(watchers).iter_mut() {
        w.sink.offer(level);
    }
}

fn value(high: bool) -> Value {
    match high {
        true => Value::Active,
        false => Value::Inactive,
    }
}

impl GpioPin for Line {
    fn read(&mut self) -> Result<bool, DeviceError> {
        let req = match &self.request {
            Some((req, _)) => req.clone(), // an output reads back its level
            None => self.requested(Mode::Input, false)?,
        };
        req.value(self.offset)
            .map(|v| v == Value::Active)
            .map_err(|_| DeviceError::Io)
    }

    fn write(&mut self, high: bool) -> Result<(), DeviceError> {
        let fresh = !matches!(self.request, Some((_, Mode::Output)));
        let req = self.requested(Mode::Output, high)?;
        if fresh {
            return Ok(()); // requested at that level
        }
        req.set_value(self.offset, value(high))
            .map_err(|_| DeviceError::Io)
    }

    fn watch(&mut self, sink: EdgeSink) -> Result<WatchGuard, DeviceError> {
        // Both edges from the kernel; each watcher gets the ones it asked for.
        let mode = Mode::Watching(EdgeDetection::BothEdges);
        let req = self.requested(mode, false)?;
        if self.reader.is_none() {
            self.start_reader(req)?;
        }
        let id = self.next_watcher;
        self.next_watcher += 1;
        lock(&self.watchers).push(Watcher { id, sink });
        let watchers = self.watchers.clone();
        Ok(WatchGuard::new(move || {
            lock(&watchers).retain(|w| w.id != id)
        }))
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if let Some((stop, _)) = &self.reader {
            stop.store(true, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buses_are_discovered_by_file_name_and_missing_ones_named() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["i2c-1", "i2c-0", "spidev0.0", "tty0"] {
            std::fs::write(dir.path().join(f), b"").unwrap();
        }
        let names: Vec<String> = discover(dir.path(), "i2c-")
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["i2c-0", "i2c-1"]);
        let err = devices(&LinuxOptions {
            i2c: vec![("i2c-9".into(), dir.path().join("nope"))],
            ..LinuxOptions::default()
        })
        .unwrap_err();
        assert!(
            err.starts_with("I2C bus i2c-9 (") && err.contains("nope"),
            "{err}"
        );
        let err = devices(&LinuxOptions {
            i2c: vec![("x".into(), dir.path().join("tty0"))],
            spi: vec![],
            gpio_chip: dir.path().join("gpiochip9"),
            gpio_lines: vec![17],
        });
        assert!(err.is_err(), "a regular file is no I2C bus");
    }
}
