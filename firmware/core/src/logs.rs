//! Workload output on its way to the gateway: a bounded buffer, so a module printing flat out
//! costs the device a fixed amount of RAM and the link a fixed rate. Lines beyond the budget are
//! counted and reported once, as the Linux agent does (stream `agent`, which a guest cannot
//! forge).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use wasmfleet_proto::{LogBatch, LogLine, Stream};

/// Longest line kept; the rest of a longer line is cut.
pub const MAX_LINE: usize = 256;

/// Lines waiting to be sent, bounded in bytes.
#[derive(Debug)]
pub struct LogBuffer {
    lines: Vec<LogLine>,
    bytes: usize,
    budget: usize,
    /// Lines dropped per workload since the last batch.
    dropped: Vec<(String, u32)>,
}

impl LogBuffer {
    /// A buffer holding at most `budget` bytes of line text.
    pub fn new(budget: usize) -> LogBuffer {
        LogBuffer {
            lines: Vec::new(),
            bytes: 0,
            budget,
            dropped: Vec::new(),
        }
    }

    /// Queues a line (cut at [`MAX_LINE`] on a character boundary), or counts it dropped.
    pub fn push(&mut self, workload: &str, stream: Stream, ts_ms: u64, line: &str) {
        let mut cut = line.len().min(MAX_LINE);
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        let line = &line[..cut];
        if self.bytes + line.len() > self.budget {
            match self.dropped.iter_mut().find(|(w, _)| w == workload) {
                Some((_, n)) => *n = n.saturating_add(1),
                None => self.dropped.push((workload.into(), 1)),
            }
            return;
        }
        self.bytes += line.len();
        self.lines.push(LogLine {
            workload: workload.into(),
            stream,
            ts_ms,
            line: line.into(),
        });
    }

    /// Whether anything waits.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.dropped.is_empty()
    }

    /// Everything queued as one batch (with a line per workload that lost lines), emptying the
    /// buffer.
    pub fn take(&mut self, ts_ms: u64) -> Option<LogBatch> {
        if self.is_empty() {
            return None;
        }
        let mut lines = core::mem::take(&mut self.lines);
        for (workload, n) in self.dropped.drain(..) {
            lines.push(LogLine {
                line: format!("{n} lines dropped: the module logs faster than the link carries"),
                workload,
                stream: Stream::Agent,
                ts_ms,
            });
        }
        self.bytes = 0;
        Some(LogBatch { lines })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_bounded_and_counted() {
        let mut b = LogBuffer::new(100);
        b.push("quiet-0", Stream::Stdout, 0, "x");
        for i in 0..50 {
            b.push("spam-0", Stream::Stdout, i, "0123456789");
        }
        let batch = b.take(99).unwrap();
        // "x" and nine lines fit in 100 bytes; the other 41 are counted.
        assert_eq!(batch.lines.len(), 11, "{batch:?}");
        let last = batch.lines.last().unwrap();
        assert_eq!(
            (last.stream, last.workload.as_str()),
            (Stream::Agent, "spam-0")
        );
        assert!(last.line.starts_with("41 lines dropped"), "{}", last.line);
        assert!(b.take(100).is_none());
    }

    #[test]
    fn long_lines_are_cut_on_a_character_boundary() {
        let mut b = LogBuffer::new(10_000);
        let line = "é".repeat(MAX_LINE);
        b.push("w", Stream::Stderr, 0, &line);
        let got = &b.take(0).unwrap().lines[0].line;
        assert!(got.len() <= MAX_LINE && got.chars().all(|c| c == 'é'));
    }
}
