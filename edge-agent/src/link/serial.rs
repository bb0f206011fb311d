//! Serial ports for the microcontroller gateway: a tty in raw mode (no echo, no line editing,
//! no translation of CR/LF, 8N1) at a given baud rate, because the link carries binary frames.

use std::fs::{File, OpenOptions};
use std::path::Path;

use rustix::termios::{OptionalActions, tcgetattr, tcsetattr};

/// Opens `path` for reading and writing and sets it raw at `baud`. The error names the device.
pub fn open_raw(path: &Path, baud: u32) -> std::io::Result<File> {
    let named = |what: &str, e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| named("cannot open", e))?;
    let mut tio = tcgetattr(&file).map_err(|e| named("not a serial port:", e.into()))?;
    tio.make_raw();
    tio.set_speed(baud)
        .map_err(|e| named(&format!("baud rate {baud} not supported by"), e.into()))?;
    tcsetattr(&file, OptionalActions::Now, &tio)
        .map_err(|e| named("cannot configure", e.into()))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_a_tty_is_refused_by_name() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let err = open_raw(f.path(), 115_200).unwrap_err().to_string();
        assert!(
            err.contains("not a serial port") && err.contains(&*f.path().to_string_lossy()),
            "{err}"
        );
        let err = open_raw(Path::new("/nonexistent/ttyACM9"), 115_200)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot open /nonexistent/ttyACM9"), "{err}");
    }
}
