//! The plugins page: per configured plugin its ABI, sha256, limits and grants, and the last
//! hour's calls, failure rate and call duration (p50, p99) from the stored execution attempts.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Extension, State};
use axum::response::Response;
use serde::Serialize;
use serde_json::{Value, json};

use super::session::Session;
use super::{Dashboard, DashboardError};
use crate::model::Millis;
use crate::store::PluginCall;

/// The window the figures cover.
pub(super) const WINDOW: Duration = Duration::from_secs(3600);
/// Most calls read for the figures (the newest ones); past it the page says so.
pub(super) const MAX_CALLS: i64 = 50_000;

/// One plugin's figures over the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(super) struct CallFigures {
    pub calls: usize,
    pub failures: usize,
    /// Failures over calls, in percent, one decimal.
    pub failure_rate: f64,
    pub p50_ms: Option<i64>,
    pub p99_ms: Option<i64>,
}

/// Calls, failures and duration percentiles (nearest rank) per plugin.
pub(super) fn figures(calls: &[PluginCall]) -> BTreeMap<String, CallFigures> {
    let mut durations: BTreeMap<&str, (Vec<i64>, usize)> = BTreeMap::new();
    for c in calls {
        let entry = durations.entry(c.plugin.as_str()).or_default();
        entry.0.push(c.duration_ms);
        if !c.succeeded {
            entry.1 += 1;
        }
    }
    durations
        .into_iter()
        .map(|(plugin, (mut ms, failures))| {
            ms.sort_unstable();
            let calls = ms.len();
            let rate = if calls == 0 {
                0.0
            } else {
                (failures as f64 * 1000.0 / calls as f64).round() / 10.0
            };
            let figures = CallFigures {
                calls,
                failures,
                failure_rate: rate,
                p50_ms: percentile(&ms, 50),
                p99_ms: percentile(&ms, 99),
            };
            (plugin.to_string(), figures)
        })
        .collect()
}

/// The nearest-rank `p`th percentile of sorted values.
fn percentile(sorted: &[i64], p: usize) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// `GET /plugins`.
pub(super) async fn page(
    State(d): State<Dashboard>,
    Extension(session): Extension<Session>,
) -> Response {
    let result = page_inner(&d, &session).await;
    d.answer(result)
}

async fn page_inner(d: &Dashboard, session: &Session) -> Result<Response, DashboardError> {
    let window_ms = i64::try_from(WINDOW.as_millis()).unwrap_or(i64::MAX);
    let since = Millis(Millis::now().0.saturating_sub(window_ms));
    let calls = d
        .admin
        .app
        .store
        .recent_plugin_calls(since, MAX_CALLS)
        .await?;
    let capped = calls.len() as i64 >= MAX_CALLS;
    let mut figures = figures(&calls);
    let mut plugins: Vec<Value> = d
        .admin
        .app
        .config
        .plugins
        .iter()
        .map(|p| {
            let mut entry = json!({
                "name": p.name,
                "builtin": p.path.is_none(),
                "path": p.path.as_ref().map(|p| p.display().to_string()),
                "memory": crate::units::ByteSize(p.memory).to_string(),
                "timeout": crate::units::format_duration(p.timeout),
                "fuel": p.fuel,
                "concurrency": p.concurrency,
                "allow_http": p.allow_http,
                "allow_db": p.allow_db,
                "figures": figures.remove(&p.name).unwrap_or_default(),
            });
            match d.admin.plugins.get(&p.name) {
                Ok(loaded) => {
                    entry["status"] = json!("ready");
                    entry["abi"] = json!(loaded.abi());
                    entry["sha256"] = json!(loaded.sha256());
                }
                Err(why) => {
                    entry["status"] = json!("unavailable");
                    entry["reason"] = json!(why);
                }
            }
            entry
        })
        .collect();
    // Calls of plugins no longer configured (executions planned before a config change).
    for (name, f) in figures {
        plugins.push(json!({"name": name, "status": "not configured", "figures": f}));
    }
    let mut plugins = Value::Array(plugins);
    d.admin.app.scrubber.scrub_value(&mut plugins);
    d.page(
        "plugins.html",
        minijinja::context! {
            csrf => &session.csrf,
            plugins => minijinja::Value::from(minijinja::value::Serde(&plugins)),
            capped => capped,
            max_calls => MAX_CALLS,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(plugin: &str, succeeded: bool, duration_ms: i64) -> PluginCall {
        PluginCall {
            plugin: plugin.into(),
            succeeded,
            duration_ms,
        }
    }

    #[test]
    fn figures_count_failures_and_take_nearest_rank_percentiles() {
        let mut calls: Vec<PluginCall> = (1..=100).map(|ms| call("a", ms % 4 != 0, ms)).collect();
        calls.push(call("b", false, 7));
        let f = figures(&calls);
        let a = &f["a"];
        assert_eq!(a.calls, 100);
        assert_eq!(a.failures, 25);
        assert_eq!(a.failure_rate, 25.0);
        assert_eq!(a.p50_ms, Some(50));
        assert_eq!(a.p99_ms, Some(99));
        let b = &f["b"];
        assert_eq!((b.calls, b.failures, b.failure_rate), (1, 1, 100.0));
        assert_eq!((b.p50_ms, b.p99_ms), (Some(7), Some(7)));
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[1, 2, 3], 99), Some(3));
        assert_eq!(
            figures(&[call("c", true, 1), call("c", false, 2), call("c", true, 3)])["c"]
                .failure_rate,
            33.3
        );
    }
}
