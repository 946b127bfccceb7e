//! The plugins page: per configured plugin its ABI, sha256, limits and grants, and the last
//! hour's calls, failure rate and call duration (p50, p99) from the per-minute counts the
//! store keeps of finished calls.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Extension, State};
use axum::response::Response;
use serde::Serialize;
use serde_json::{Value, json};

use super::session::Session;
use super::{Dashboard, DashboardError};
use crate::model::Millis;
use crate::store::PluginCalls;

/// The window the figures cover.
pub(super) const WINDOW: Duration = Duration::from_secs(3600);

/// One plugin's figures over the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(super) struct CallFigures {
    pub calls: i64,
    pub failures: i64,
    /// Failures over calls, in percent, one decimal.
    pub failure_rate: f64,
    /// Call duration percentiles in ms, one decimal, interpolated in the duration histogram.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl CallFigures {
    fn of(c: &PluginCalls) -> CallFigures {
        let one_decimal = |x: f64| (x * 10.0).round() / 10.0;
        let rate = if c.calls == 0 {
            0.0
        } else {
            one_decimal(c.failures as f64 * 100.0 / c.calls as f64)
        };
        CallFigures {
            calls: c.calls,
            failures: c.failures,
            failure_rate: rate,
            p50_ms: c.percentile(50.0).map(one_decimal),
            p99_ms: c.percentile(99.0).map(one_decimal),
        }
    }
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
    let until = Millis(Millis::now().0.saturating_add(1));
    let since = Millis(until.0.saturating_sub(window_ms));
    let mut figures: BTreeMap<String, CallFigures> = d
        .admin
        .app
        .store
        .plugin_calls(since, until)
        .await?
        .iter()
        .map(|(plugin, calls)| (plugin.clone(), CallFigures::of(calls)))
        .collect();
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
            d.admin.plugins.status(&p.name).describe(&mut entry);
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
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_give_the_failure_rate_and_percentiles_to_one_decimal() {
        let calls = PluginCalls {
            calls: 3,
            failures: 1,
            durations: vec![(Some(10), 2), (Some(20), 1)],
        };
        let f = CallFigures::of(&calls);
        assert_eq!((f.calls, f.failures, f.failure_rate), (3, 1, 33.3));
        // Rank 1.5 of 3: 1.5/2 of the way through 0-10 ms.
        assert_eq!(f.p50_ms, Some(7.5));
        assert_eq!(f.p99_ms, Some(19.7));
        let none = CallFigures::of(&PluginCalls::default());
        assert_eq!((none.failure_rate, none.p50_ms), (0.0, None));
    }
}
