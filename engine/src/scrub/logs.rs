//! The process's log output (stderr), scrubbed: each log line is held until it is complete,
//! then written with every secret replaced. Logging starts before the config is read, so the
//! scrubber is installed later, once per process ([`install`]); lines before that are written
//! as they are (they come from the command line and the config loader, which quote no secret).

use std::io::Write;
use std::sync::{Arc, RwLock};

use super::Scrubber;

/// The scrubber of this process's logs; None until [`install`].
static CURRENT: RwLock<Option<Arc<Scrubber>>> = RwLock::new(None);

/// Makes `scrubber` the one every later log line goes through (replacing any earlier one:
/// a process serves one config).
pub fn install(scrubber: Arc<Scrubber>) {
    let mut current = CURRENT.write().unwrap_or_else(|e| e.into_inner());
    *current = Some(scrubber);
}

fn current() -> Option<Arc<Scrubber>> {
    let current = CURRENT.read().unwrap_or_else(|e| e.into_inner());
    current.as_ref().filter(|s| !s.is_empty()).cloned()
}

/// A writer for one log line on stderr: `tracing_subscriber::fmt().with_writer(logs::stderr)`.
pub fn stderr() -> LineWriter {
    LineWriter {
        scrubber: current(),
        held: Vec::new(),
    }
}

/// Holds what the formatter writes for one event and writes it, scrubbed, when dropped (the
/// formatter makes one writer per event). Without secrets it writes straight through.
pub struct LineWriter {
    scrubber: Option<Arc<Scrubber>>,
    held: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.scrubber.is_none() {
            return std::io::stderr().write(buf);
        }
        self.held.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if let Some(scrubber) = &self.scrubber {
            let held = std::mem::take(&mut self.held);
            std::io::stderr().write_all(&scrubbed(scrubber, held))?;
        }
        std::io::stderr().flush()
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if self.scrubber.is_some() && !self.held.is_empty() {
            // Nowhere to report a failed write to stderr.
            let _ = self.flush();
        }
    }
}

/// `bytes` with every secret replaced. The formatter writes UTF-8; anything else is
/// scrubbed as lossy text rather than passed through unseen.
fn scrubbed(scrubber: &Scrubber, bytes: Vec<u8>) -> Vec<u8> {
    match String::from_utf8(bytes) {
        Ok(mut text) => {
            scrubber.scrub_string(&mut text);
            text.into_bytes()
        }
        Err(e) => scrubber
            .scrub(&String::from_utf8_lossy(e.as_bytes()))
            .into_owned()
            .into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_bytes_come_out_scrubbed_even_when_split_across_writes() {
        let s = Scrubber::new([(Some("HOOK"), "https://x.example/hook/abcdef")]);
        let mut held = Vec::new();
        held.extend_from_slice(b"calling https://x.exa");
        held.extend_from_slice(b"mple/hook/abcdef now\n");
        assert_eq!(scrubbed(&s, held), b"calling ${secret:HOOK} now\n");
        let mut odd = b"bad \xff byte https://x.example/hook/abcdef".to_vec();
        odd.push(b'\n');
        let out = String::from_utf8(scrubbed(&s, odd)).unwrap_or_default();
        assert_eq!(out, "bad \u{fffd} byte ${secret:HOOK}\n");
    }
}
