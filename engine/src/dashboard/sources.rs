//! The sources page: per configured source its provider, the URL to give the provider, how
//! many secrets it has (never their values), when it last delivered an accepted event, and the
//! last hour's refusals with their most frequent reasons.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::extract::{Extension, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::plugins::WINDOW;
use super::session::Session;
use super::{Dashboard, DashboardError};
use crate::config::{Config, Source, TlsMode};
use crate::model::Millis;
use crate::store::RefusalCount;

/// Most refusals read for the counts (the newest ones); past it the page says so.
const MAX_REFUSALS: i64 = 50_000;
/// Reasons shown per source, most frequent first.
const TOP_REASONS: usize = 3;

/// The URL a provider should post to: the configured `url:`, else the one the ingress
/// listener answers at. The host is the listener's address, or, when it listens on every
/// address or only behind proxies, the host this dashboard was opened with (`guessed` is
/// then true).
pub(super) fn public_url(
    config: &Config,
    source: &Source,
    dashboard_host: Option<&str>,
) -> (String, bool) {
    if let Some(url) = &source.url {
        return (url.clone(), false);
    }
    // Behind trusted proxies only (`proxy_only`), providers reach the proxies, over HTTPS.
    let behind_proxy = config.ingress.proxy_only;
    let scheme = match config.tls {
        TlsMode::Plain if !behind_proxy => "http",
        _ => "https",
    };
    let listen: SocketAddr = config.listen;
    let (host, guessed) = if listen.ip().is_unspecified() || behind_proxy {
        let name = dashboard_host
            .map(host_name)
            .filter(|h| !h.is_empty())
            .unwrap_or("localhost");
        (format_host(name, listen.port()), true)
    } else {
        (listen.to_string(), false)
    };
    (format!("{scheme}://{host}/hooks/{}", source.id), guessed)
}

/// The host part of a `Host` header value (`name:port`, `[v6]:port`).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

fn format_host(name: &str, port: u16) -> String {
    if name.contains(':') {
        format!("[{name}]:{port}")
    } else {
        format!("{name}:{port}")
    }
}

/// Refusals per source: the total and the most frequent reasons with their counts. A record
/// that summarises a second's flood of refusals counts for all of them, under its first
/// request's reason.
pub(super) fn refusals_by_source(
    rows: &[RefusalCount],
) -> BTreeMap<String, (i64, Vec<(String, i64)>)> {
    let mut counted: BTreeMap<&str, BTreeMap<&str, i64>> = BTreeMap::new();
    for r in rows {
        let (n, reason) = match flood_summary(&r.reason) {
            Some((n, first)) => (r.count.saturating_mul(n), first),
            None => (r.count, r.reason.as_str()),
        };
        let reasons = counted.entry(r.source.as_str()).or_default();
        *reasons.entry(reason).or_default() += n;
    }
    counted
        .into_iter()
        .map(|(source, reasons)| {
            let total = reasons.values().sum();
            let mut top: Vec<(String, i64)> = reasons
                .into_iter()
                .map(|(r, n)| (r.to_string(), n))
                .collect();
            top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            top.truncate(TOP_REASONS);
            (source.to_string(), (total, top))
        })
        .collect()
}

/// `N more refused requests in this second, counted here ...; the first of them: REASON`, as
/// the ingress writes a flood's summary (`ingress/rejections.rs`): N (the refusals the row
/// stands for, the first included) and REASON.
fn flood_summary(reason: &str) -> Option<(i64, &str)> {
    let (count, rest) = reason.split_once(" more refused request")?;
    let n: i64 = count.parse().ok()?;
    let (_, first) = rest.split_once("; the first of them: ")?;
    Some((n, first))
}

/// `GET /sources`.
pub(super) async fn page(
    State(d): State<Dashboard>,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
) -> Response {
    let result = page_inner(&d, &session, &headers).await;
    d.answer(result)
}

async fn page_inner(
    d: &Dashboard,
    session: &Session,
    headers: &HeaderMap,
) -> Result<Response, DashboardError> {
    let config = &d.admin.app.config;
    let store = &d.admin.app.store;
    let window_ms = i64::try_from(WINDOW.as_millis()).unwrap_or(i64::MAX);
    let since = Millis(Millis::now().0.saturating_sub(window_ms));
    let rows = store.recent_refusals(since, MAX_REFUSALS).await?;
    let capped = rows.iter().map(|r| r.count).sum::<i64>() >= MAX_REFUSALS;
    let mut refusals = refusals_by_source(&rows);
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let mut sources = Vec::with_capacity(config.sources.len());
    for s in &config.sources {
        let (url, guessed) = public_url(config, s, host);
        let last = store.last_accepted(&s.id).await?;
        let (refused, reasons) = refusals.remove(&s.id).unwrap_or_default();
        sources.push(json!({
            "id": s.id,
            "provider": s.provider.id(),
            "url": url,
            "url_guessed": guessed,
            "secrets": s.secrets.len(),
            "public_keys": s.public_keys.len(),
            "last_accepted": last.map(|m| m.0),
            "refused": refused,
            "reasons": reasons.into_iter().map(|(r, n)| json!({"reason": r, "count": n})).collect::<Vec<_>>(),
        }));
    }
    // Refusals of sources that are not configured (posts to unknown ids).
    let unknown: Vec<Value> = refusals
        .into_iter()
        .map(|(source, (refused, reasons))| {
            json!({
                "id": source,
                "refused": refused,
                "reasons": reasons.into_iter().map(|(r, n)| json!({"reason": r, "count": n})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut view = json!({"sources": sources, "unknown": unknown});
    // Secret values never reach the page, even where one was written into a URL.
    d.admin.app.scrubber.scrub_value(&mut view);
    d.page(
        "sources.html",
        minijinja::context! {
            csrf => &session.csrf,
            sources => minijinja::Value::from(minijinja::value::Serde(&view["sources"])),
            unknown => minijinja::Value::from(minijinja::value::Serde(&view["unknown"])),
            capped => capped,
            max_refusals => MAX_REFUSALS,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        crate::config::load_str(std::path::Path::new("hookwise.yaml"), text, &|_| None)
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn the_provider_url_is_the_configured_one_or_the_listeners() {
        let sources = "sources:\n  - { id: gh, provider: none }\n  - { id: tw, provider: none, url: \"https://hooks.example/tw\" }\n";
        let c = config(&format!("listen: 127.0.0.1:8443\n{sources}"));
        assert_eq!(
            public_url(&c, &c.sources[0], Some("dash.example:9091")),
            ("https://127.0.0.1:8443/hooks/gh".to_string(), false)
        );
        assert_eq!(
            public_url(&c, &c.sources[1], None),
            ("https://hooks.example/tw".to_string(), false)
        );
        let c = config(&format!(
            "listen: 0.0.0.0:8080\ninsecure_http: true\n{sources}"
        ));
        assert_eq!(
            public_url(&c, &c.sources[0], Some("dash.example:9091")),
            ("http://dash.example:8080/hooks/gh".to_string(), true)
        );
    }

    #[test]
    fn host_names_lose_their_port() {
        assert_eq!(host_name("example.com:9091"), "example.com");
        assert_eq!(host_name("example.com"), "example.com");
        assert_eq!(host_name("[::1]:9091"), "::1");
        assert_eq!(format_host("::1", 8443), "[::1]:8443");
        assert_eq!(format_host("h", 8443), "h:8443");
    }

    #[test]
    fn refusals_are_totalled_and_the_top_reasons_kept() {
        let row = |source: &str, reason: &str, count| RefusalCount {
            source: source.into(),
            reason: reason.into(),
            count,
        };
        let by = refusals_by_source(&[
            row("gh", "bad signature", 5),
            row("gh", "too large", 1),
            row("gh", "rate limited", 9),
            row("gh", "stale timestamp", 2),
            row("x", "unknown source", 3),
        ]);
        let (total, reasons) = &by["gh"];
        assert_eq!(*total, 17);
        let names: Vec<&str> = reasons.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(names, ["rate limited", "bad signature", "stale timestamp"]);
        assert_eq!(by["x"].0, 3);
    }

    #[test]
    fn a_flood_summary_counts_every_refusal_it_stands_for() {
        let summary = "41 more refused requests in this second, counted here rather than recorded \
                       one by one (more than 20 a second); the first of them: bad signature";
        assert_eq!(flood_summary(summary), Some((41, "bad signature")));
        assert_eq!(flood_summary("bad signature"), None);
        let by = refusals_by_source(&[
            RefusalCount {
                source: "gh".into(),
                reason: summary.into(),
                count: 2,
            },
            RefusalCount {
                source: "gh".into(),
                reason: "bad signature".into(),
                count: 20,
            },
        ]);
        assert_eq!(by["gh"].0, 2 * 41 + 20);
        assert_eq!(by["gh"].1, vec![("bad signature".to_string(), 102)]);
    }
}
