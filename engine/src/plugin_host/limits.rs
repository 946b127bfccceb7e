//! Per-call resource limits and the bounded sinks that enforce them: linear
//! memory (a `ResourceLimiter` that also reports the peak), log lines and
//! captured stdio.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use serde::Serialize;
use tokio::io::AsyncWrite;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// One mebibyte.
const MIB: u64 = 1024 * 1024;
/// Largest table (in elements) a plugin may grow to; tables hold function
/// references, and even large interpreters (Python, SpiderMonkey) stay well below.
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

/// What one call of a plugin may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Total linear memory of all of the plugin's memories, in bytes.
    pub memory_bytes: u64,
    /// Wall time for instantiation plus the call (including time spent
    /// waiting on HTTP or the database).
    pub timeout: Duration,
    /// Fuel (roughly: WebAssembly instructions) for one call; only enforced when
    /// the host was created with `HostSettings::consume_fuel`.
    pub fuel: Option<u64>,
    /// Largest output JSON (or error message) a call may return, in bytes.
    pub max_output_bytes: usize,
    /// Total bytes of log lines (including captured stdout/stderr) kept per call.
    pub max_log_bytes: usize,
    /// Number of log lines kept per call.
    pub max_log_lines: usize,
    /// Outbound HTTP requests allowed per call.
    pub max_http_requests: usize,
    /// Time for one outbound HTTP request, from connect to the last body byte.
    pub http_timeout: Duration,
    /// Largest outbound HTTP response body, in bytes.
    pub max_http_response_bytes: u64,
    /// SQL statements allowed per call.
    pub max_db_statements: usize,
    /// Rows returned by one SQL statement before the result is cut off.
    pub max_db_rows: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 * MIB,
            timeout: Duration::from_secs(5),
            fuel: None,
            max_output_bytes: 1024 * 1024,
            max_log_bytes: 64 * 1024,
            max_log_lines: 1000,
            max_http_requests: 32,
            http_timeout: Duration::from_secs(10),
            max_http_response_bytes: 4 * MIB,
            max_db_statements: 1000,
            max_db_rows: 1000,
        }
    }
}

/// Caps the linear memory of one store and remembers what happened.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    limit: usize,
    current: usize,
    peak: usize,
    /// Set when a growth was refused; a trap after this is reported as
    /// `MemoryExceeded`.
    pub(crate) exceeded: bool,
}

impl MemoryLimiter {
    pub(crate) fn new(limit_bytes: u64) -> Self {
        Self {
            limit: usize::try_from(limit_bytes).unwrap_or(usize::MAX),
            current: 0,
            peak: 0,
            exceeded: false,
        }
    }

    pub(crate) fn peak(&self) -> u64 {
        u64::try_from(self.peak).unwrap_or(u64::MAX)
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        let total = self.current.saturating_add(growth);
        if total > self.limit || maximum.is_some_and(|max| desired > max) {
            self.exceeded = true;
            return Ok(false);
        }
        self.current = total;
        self.peak = self.peak.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS && maximum.is_none_or(|max| desired <= max))
    }
}

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    /// The `log` import.
    Log,
    /// The guest's standard output.
    Stdout,
    /// The guest's standard error (panic messages land here).
    Stderr,
}

/// One line of a call's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    pub level: LogLevel,
    pub stream: LogStream,
    pub message: String,
}

/// Text of the line appended when lines were dropped.
pub const LOG_TRUNCATED_MARKER: &str = "[hookwise: log limit reached, further output dropped]";

/// Collects log lines up to a byte and a line budget.
#[derive(Debug)]
pub(crate) struct LogSink {
    lines: Vec<LogLine>,
    bytes: usize,
    max_bytes: usize,
    max_lines: usize,
    dropped_lines: u64,
}

impl LogSink {
    pub(crate) fn new(max_bytes: usize, max_lines: usize) -> Self {
        Self {
            lines: Vec::new(),
            bytes: 0,
            max_bytes,
            max_lines,
            dropped_lines: 0,
        }
    }

    pub(crate) fn push(&mut self, level: LogLevel, stream: LogStream, message: &str) {
        if self.dropped_lines > 0 || self.lines.len() >= self.max_lines {
            self.dropped_lines += 1;
            return;
        }
        let room = self.max_bytes.saturating_sub(self.bytes);
        if message.len() > room {
            // Keep what fits of this line, then drop everything after it.
            let cut = floor_char_boundary(message, room);
            if cut > 0 {
                self.bytes += cut;
                self.lines.push(LogLine {
                    level,
                    stream,
                    message: message[..cut].to_string(),
                });
            }
            self.dropped_lines += 1;
            return;
        }
        self.bytes += message.len();
        self.lines.push(LogLine {
            level,
            stream,
            message: message.to_string(),
        });
    }

    /// Adds captured stdio, one log line per text line.
    pub(crate) fn push_stdio(&mut self, stream: LogStream, level: LogLevel, pipe: &CappedPipe) {
        let (bytes, truncated) = pipe.contents();
        let text = String::from_utf8_lossy(&bytes);
        for line in text.lines() {
            self.push(level, stream, line);
        }
        if truncated {
            self.dropped_lines += 1;
        }
    }

    /// The kept lines (with a final marker line if anything was dropped).
    pub(crate) fn finish(mut self) -> (Vec<LogLine>, bool) {
        let truncated = self.dropped_lines > 0;
        if truncated {
            self.lines.push(LogLine {
                level: LogLevel::Warn,
                stream: LogStream::Log,
                message: format!("{LOG_TRUNCATED_MARKER} ({} lines)", self.dropped_lines),
            });
        }
        (self.lines, truncated)
    }
}

/// Largest index `<= at` that is a char boundary of `s`.
pub(crate) fn floor_char_boundary(s: &str, at: usize) -> usize {
    if at >= s.len() {
        return s.len();
    }
    let mut i = at;
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Truncates `s` to at most `max` bytes (on a char boundary).
pub(crate) fn truncate_string(mut s: String, max: usize) -> String {
    let cut = floor_char_boundary(&s, max);
    s.truncate(cut);
    s
}

#[derive(Debug, Default)]
struct CappedBuf {
    data: Vec<u8>,
    total: u64,
}

/// A stdout/stderr sink that accepts every write (so guests never see an I/O
/// error) but keeps only the first `cap` bytes.
#[derive(Debug, Clone)]
pub(crate) struct CappedPipe {
    cap: usize,
    buf: Arc<Mutex<CappedBuf>>,
}

impl CappedPipe {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            cap,
            buf: Arc::default(),
        }
    }

    /// The kept bytes and whether more was written than kept.
    pub(crate) fn contents(&self) -> (Vec<u8>, bool) {
        let buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        let truncated = buf.total > buf.data.len() as u64;
        (buf.data.clone(), truncated)
    }
}

impl AsyncWrite for CappedPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        let room = self.cap.saturating_sub(buf.data.len());
        let keep = room.min(data.len());
        buf.data.extend_from_slice(&data[..keep]);
        buf.total = buf.total.saturating_add(data.len() as u64);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_sink_caps_bytes_and_marks_truncation() {
        let mut sink = LogSink::new(10, 100);
        sink.push(LogLevel::Info, LogStream::Log, "12345");
        sink.push(LogLevel::Info, LogStream::Log, "678901234");
        sink.push(LogLevel::Info, LogStream::Log, "dropped");
        let (lines, truncated) = sink.finish();
        assert!(truncated);
        assert_eq!(lines[0].message, "12345");
        assert_eq!(lines[1].message, "67890");
        assert!(lines[2].message.starts_with(LOG_TRUNCATED_MARKER));
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn log_sink_caps_line_count() {
        let mut sink = LogSink::new(1000, 2);
        for _ in 0..5 {
            sink.push(LogLevel::Info, LogStream::Log, "x");
        }
        let (lines, truncated) = sink.finish();
        assert!(truncated);
        assert_eq!(lines.len(), 3);
        assert!(lines[2].message.contains("(3 lines)"));
    }

    #[test]
    fn memory_limiter_refuses_and_records_peak() {
        let mut limiter = MemoryLimiter::new(100);
        assert!(limiter.memory_growing(0, 60, None).unwrap_or(false));
        assert!(!limiter.memory_growing(60, 120, None).unwrap_or(true));
        assert!(limiter.exceeded);
        assert_eq!(limiter.peak(), 60);
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_string("héllo".to_string(), 2), "h");
    }
}
