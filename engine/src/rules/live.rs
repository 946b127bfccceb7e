//! The rules a running server uses, and their hot reload.
//!
//! A reload compiles every rule file again; only a complete, valid set replaces the one in
//! force, in one atomic swap (an event is matched against either the old set or the new one,
//! never a mix). When the new files have problems, the old rules stay and the problems are kept
//! as the last reload error, logged, and shown by `status()` (and the admin API).
//!
//! Reloads happen on SIGHUP, when a rule file changes (checked once a second: a new, removed,
//! resized or re-written file), and on request.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::RuleSet;
use crate::config::Config;
use crate::model::Millis;

/// How often rule files are checked for changes.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// The outcome of the last reload.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReloadStatus {
    /// Rules in force.
    pub rules: usize,
    /// When the rules in force were loaded.
    pub loaded_at: Millis,
    /// The last reload that failed after them, if any: when and why (file:line:column).
    pub last_error: Option<ReloadError>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReloadError {
    pub at: Millis,
    pub problems: Vec<String>,
}

/// A refused reload, as hookwise's own `rules.reload_failed` event tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReloadFailure {
    pub at: Millis,
    /// `file:line:column: message`, as `hookwise check` prints them.
    pub problems: Vec<String>,
    /// The files the problems are in, each once, in order of first mention.
    pub files: Vec<String>,
}

struct Inner {
    rules: RwLock<Arc<RuleSet>>,
    status: Mutex<ReloadStatus>,
    /// The last refused reload, for whoever announces them (see [`LiveRules::failures`]).
    failures: tokio::sync::watch::Sender<Option<ReloadFailure>>,
}

/// The rules in force; swapped whole on reload. Cheap to clone.
#[derive(Clone)]
pub struct LiveRules(Arc<Inner>);

impl LiveRules {
    pub fn new(rules: RuleSet) -> LiveRules {
        let status = ReloadStatus {
            rules: rules.len(),
            loaded_at: Millis::now(),
            last_error: None,
        };
        LiveRules(Arc::new(Inner {
            rules: RwLock::new(Arc::new(rules)),
            status: Mutex::new(status),
            failures: tokio::sync::watch::Sender::new(None),
        }))
    }

    /// Refused reloads as they happen: the last one (None before any).
    pub fn failures(&self) -> tokio::sync::watch::Receiver<Option<ReloadFailure>> {
        self.0.failures.subscribe()
    }

    /// The rule set in force. Holding it keeps it alive across a reload.
    pub fn current(&self) -> Arc<RuleSet> {
        match self.0.rules.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn status(&self) -> ReloadStatus {
        match self.0.status.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts `rules` in force.
    pub fn replace(&self, rules: RuleSet) {
        let count = rules.len();
        let rules = Arc::new(rules);
        match self.0.rules.write() {
            Ok(mut guard) => *guard = rules,
            Err(poisoned) => *poisoned.into_inner() = rules,
        }
        let mut status = self.0.status.lock().unwrap_or_else(|p| p.into_inner());
        *status = ReloadStatus {
            rules: count,
            loaded_at: Millis::now(),
            last_error: None,
        };
    }

    /// Compiles the rule files of `config` again; on success they replace the rules in force,
    /// on failure the old rules stay and the problems become the last reload error.
    pub fn reload(&self, config: &Config) -> Result<usize, Vec<String>> {
        match super::load_for(config) {
            Ok(rules) => {
                let n = rules.len();
                self.replace(rules);
                tracing::info!(rules = n, "rules reloaded");
                Ok(n)
            }
            Err(diagnostics) => {
                let problems: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
                let mut files: Vec<String> = Vec::new();
                for d in &diagnostics {
                    let file = d.file.display().to_string();
                    if !files.contains(&file) {
                        files.push(file);
                    }
                }
                tracing::error!(
                    problems = problems.len(),
                    "rule reload failed; the rules in force stay:\n  {}",
                    problems.join("\n  ")
                );
                let at = Millis::now();
                {
                    let mut status = self.0.status.lock().unwrap_or_else(|p| p.into_inner());
                    status.last_error = Some(ReloadError {
                        at,
                        problems: problems.clone(),
                    });
                }
                self.0.failures.send_replace(Some(ReloadFailure {
                    at,
                    problems: problems.clone(),
                    files,
                }));
                Err(problems)
            }
        }
    }

    /// Reloads on SIGHUP and when a rule file changes, until `stop` turns true.
    pub async fn watch(self, config: Arc<Config>, mut stop: tokio::sync::watch::Receiver<bool>) {
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut seen = snapshot(&config.rules);
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            #[cfg(unix)]
            let hangup = async {
                match hup.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let hangup = std::future::pending::<()>();
            tokio::select! {
                _ = stop.changed() => return,
                _ = hangup => {
                    tracing::info!("SIGHUP: reloading rules");
                    seen = snapshot(&config.rules);
                    let _ = self.reload(&config);
                }
                _ = tick.tick() => {
                    let now = snapshot(&config.rules);
                    if now != seen {
                        seen = now;
                        tracing::info!("rule files changed: reloading rules");
                        let _ = self.reload(&config);
                    }
                }
            }
        }
    }
}

/// What identifies the current contents of the rule files: every `*.yaml`/`*.yml` file under
/// the rule paths with its size and modification time.
type Snapshot = BTreeMap<PathBuf, (u64, Option<SystemTime>)>;

fn snapshot(paths: &[PathBuf]) -> Snapshot {
    let mut out = Snapshot::new();
    for path in paths {
        collect(path, 0, &mut out);
    }
    out
}

fn collect(path: &Path, depth: usize, out: &mut Snapshot) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if meta.is_dir() {
        if depth > 16 {
            return;
        }
        if let Ok(entries) = std::fs::read_dir(path) {
            for entry in entries.flatten() {
                let p = entry.path();
                let is_rule_file = p
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| e == "yaml" || e == "yml");
                if is_rule_file || p.is_dir() {
                    collect(&p, depth + 1, out);
                }
            }
        }
    } else {
        out.insert(path.to_path_buf(), (meta.len(), meta.modified().ok()));
    }
}
