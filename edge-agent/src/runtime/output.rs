//! Guest stdout/stderr as log lines: a WASI output stream that splits on `'\n'`, cuts lines at
//! [`MAX_LOG_LINE`] bytes and hands each line to the agent as a [`LogLine`].
//!
//! Writes never block the guest, and output is bounded at the source: every line passes the
//! instance's [`LogBudget`] (shared by its stdout and stderr), and a line over budget, or one
//! the agent's full queue cannot take, is dropped and counted in the next `Agent` marker line.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::mpsc;
use wasmfleet_proto::{LogLine, MAX_LOG_LINE, Stream};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use crate::logbudget::{Admit, Dropped, Limits, LogBudget};

/// Bytes the guest may hand over per write call.
const WRITE_BUDGET: usize = 64 * 1024;

/// Recent lines kept per stream, to explain a trap (a Rust panic prints its message to
/// stderr just before it traps).
const TAIL_LINES: usize = 3;

/// The log budget of one instance, shared by its output streams, with its time origin.
#[derive(Clone)]
pub(super) struct SharedBudget(Arc<Mutex<(LogBudget, Instant)>>);

impl SharedBudget {
    pub(super) fn new(limits: Limits) -> SharedBudget {
        SharedBudget(Arc::new(Mutex::new((
            LogBudget::new(limits, std::time::Duration::ZERO),
            Instant::now(),
        ))))
    }

    fn with<T>(&self, f: impl FnOnce(&mut LogBudget, std::time::Duration) -> T) -> T {
        let mut guard = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let (budget, origin) = &mut *guard;
        let now = origin.elapsed();
        f(budget, now)
    }
}

/// One output stream of one instance. Clones share the partial-line buffer.
#[derive(Clone)]
pub(super) struct LineSink {
    workload: Arc<str>,
    stream: Stream,
    tx: mpsc::Sender<LogLine>,
    budget: SharedBudget,
    pending: Arc<Mutex<Vec<u8>>>,
    tail: Arc<Mutex<std::collections::VecDeque<String>>>,
}

impl LineSink {
    pub(super) fn new(
        workload: &str,
        stream: Stream,
        tx: mpsc::Sender<LogLine>,
        budget: SharedBudget,
    ) -> LineSink {
        LineSink {
            workload: workload.into(),
            stream,
            tx,
            budget,
            pending: Arc::default(),
            tail: Arc::default(),
        }
    }

    /// The last few non-empty lines written, joined with `" | "`, if any.
    pub(super) fn tail(&self) -> Option<String> {
        let tail = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
        (!tail.is_empty()).then(|| tail.iter().cloned().collect::<Vec<_>>().join(" | "))
    }

    /// Appends bytes, emitting every complete (or over-long) line.
    fn push(&self, bytes: &[u8]) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.extend_from_slice(bytes);
        loop {
            if let Some(nl) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=nl).collect();
                self.emit(&line[..nl]);
            } else if pending.len() >= MAX_LOG_LINE {
                let line: Vec<u8> = pending.drain(..MAX_LOG_LINE).collect();
                self.emit(&line);
            } else {
                break;
            }
        }
    }

    /// Emits `text` as whole lines (a host API `log` call), whatever partial line the guest's
    /// WASI writes left pending.
    pub(super) fn write_line(&self, text: &str) {
        for line in text.split('\n') {
            self.emit(line.as_bytes());
        }
    }

    /// Emits a last line without newline, if any, and a last marker for lines dropped since
    /// the previous one (called when the instance ends).
    pub(super) fn flush_partial(&self) {
        let rest =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        if !rest.is_empty() {
            self.emit(&rest);
        }
        if let Some((dropped, limits)) = self
            .budget
            .with(|b, _| b.take_dropped().map(|d| (d, *b.limits())))
        {
            self.send_marker(dropped, &limits);
        }
    }

    /// Queues a line for the agent; false if the queue is full.
    fn send(&self, stream: Stream, line: String) -> bool {
        let ts_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.tx
            .try_send(LogLine {
                workload: self.workload.to_string(),
                stream,
                ts_ms,
                line,
            })
            .is_ok()
    }

    /// Queues a drop marker; if the queue is full, the drops wait for the next marker.
    fn send_marker(&self, dropped: Dropped, limits: &Limits) {
        if !self.send(Stream::Agent, dropped.marker(limits)) {
            self.budget.with(|b, _| b.restore(dropped));
        }
    }

    fn emit(&self, raw: &[u8]) {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let mut line = String::from_utf8_lossy(raw).into_owned();
        if line.len() > MAX_LOG_LINE {
            // Lossy decoding can grow invalid bytes into 3-byte replacement characters.
            line.truncate(line.floor_char_boundary(MAX_LOG_LINE));
        }
        if !line.trim().is_empty() {
            let mut tail = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            let mut short = line.clone();
            short.truncate(short.floor_char_boundary(200));
            tail.push_back(short);
        }
        let admit = self
            .budget
            .with(|b, now| (b.admit(line.len(), now), *b.limits()));
        match admit {
            (Admit::Drop, _) => {}
            (Admit::Ship, _) => self.ship(line),
            (Admit::ShipAfterDrops(d), limits) => {
                self.send_marker(d, &limits);
                self.ship(line);
            }
        }
    }

    /// Queues an admitted line; a full queue counts it into the next marker.
    fn ship(&self, line: String) {
        let len = line.len();
        if !self.send(self.stream, line) {
            self.budget.with(|b, _| b.count_dropped(len));
        }
    }
}

impl IsTerminal for LineSink {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LineSink {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineSink {
    async fn ready(&mut self) {}
}

impl OutputStream for LineSink {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_BUDGET)
    }
}

impl tokio::io::AsyncWrite for LineSink {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(stream: Stream, tx: mpsc::Sender<LogLine>) -> LineSink {
        LineSink::new("w", stream, tx, SharedBudget::new(Limits::default()))
    }

    fn lines(rx: &mut mpsc::Receiver<LogLine>) -> Vec<String> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|l| l.line)
            .collect()
    }

    #[test]
    fn splits_lines_across_writes() {
        let (tx, mut rx) = mpsc::channel(16);
        let sink = sink(Stream::Stdout, tx);
        sink.push(b"one\ntw");
        sink.push(b"o\r\nthree");
        assert_eq!(lines(&mut rx), ["one", "two"]);
        sink.flush_partial();
        assert_eq!(lines(&mut rx), ["three"]);
    }

    #[test]
    fn cuts_long_lines() {
        let (tx, mut rx) = mpsc::channel(16);
        let sink = sink(Stream::Stderr, tx);
        sink.push(&vec![b'x'; MAX_LOG_LINE + 10]);
        sink.push(b"\n");
        let got = lines(&mut rx);
        assert_eq!(
            got.iter().map(String::len).collect::<Vec<_>>(),
            [MAX_LOG_LINE, 10]
        );
    }

    #[test]
    fn a_flood_is_bounded_and_its_gap_reported_when_the_instance_ends() {
        let (tx, mut rx) = mpsc::channel(100_000);
        let limits = Limits {
            lines_per_sec: 10,
            bytes_per_sec: 1 << 20,
            burst_secs: 1,
        };
        let budget = SharedBudget::new(limits);
        let out = LineSink::new("w", Stream::Stdout, tx.clone(), budget.clone());
        let err = LineSink::new("w", Stream::Stderr, tx, budget);
        for _ in 0..5_000 {
            out.push(b"flood\n");
            err.push(b"flood\n");
        }
        out.flush_partial();
        let got: Vec<LogLine> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        let shipped = got.iter().filter(|l| l.stream != Stream::Agent).count();
        // Both streams share one budget: about one second's worth, not 10,000 lines.
        assert!((10..=12).contains(&shipped), "{shipped}");
        let marker = got.last().unwrap();
        assert_eq!(marker.stream, Stream::Agent);
        assert!(
            marker
                .line
                .starts_with(&format!("{} lines (", 10_000 - shipped)),
            "{}",
            marker.line
        );
    }

    #[test]
    fn lines_the_full_queue_refused_are_counted_too() {
        let (tx, mut rx) = mpsc::channel(2);
        let out = sink(Stream::Stdout, tx);
        out.push(b"a\nb\nc\nd\n");
        assert_eq!(lines(&mut rx), ["a", "b"]);
        out.flush_partial();
        let last = rx.try_recv().unwrap();
        assert_eq!(last.stream, Stream::Agent);
        assert!(
            last.line.starts_with("2 lines (2 bytes) dropped"),
            "{}",
            last.line
        );
    }
}
