//! `plugins`: what a plugin call costs with a fresh sandbox (Store + instance) per call, and
//! what start-up costs with a cold compile cache versus a warm one, for the no-op Rust plugin
//! and the JavaScript (componentize-js) and Python (componentize-py) examples (each logs a
//! line and POSTs JSON to a local server).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use hookwise::plugin_host::{
    CallContext, CallEvent, Grants, HostSettings, Limits, PluginHost, PluginSpec, WasmSource,
};

pub struct Row {
    pub plugin: &'static str,
    pub size_bytes: u64,
    pub cold_compile: Duration,
    pub warm_load: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub calls: usize,
}

/// Builds the JS and Python examples with `plugins/examples/build-lang.sh` into `out`.
pub fn build_lang(repo: &Path, out: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let status = std::process::Command::new("bash")
        .arg(repo.join("plugins/examples/build-lang.sh"))
        .arg(out)
        .status()
        .context("running build-lang.sh")?;
    anyhow::ensure!(status.success(), "build-lang.sh failed");
    Ok((out.join("js.wasm"), out.join("python.wasm")))
}

fn settings(cache: &Path) -> HostSettings {
    HostSettings {
        cache_dir: Some(cache.to_path_buf()),
        max_instances: 4,
        max_memory_bytes: 128 * 1024 * 1024,
        ..HostSettings::default()
    }
}

fn spec(name: &str, wasm: &Path, grants: &Grants) -> PluginSpec {
    PluginSpec {
        name: name.to_string(),
        wasm: WasmSource::Path(wasm.to_path_buf()),
        limits: Limits {
            memory_bytes: 64 * 1024 * 1024,
            timeout: Duration::from_secs(10),
            ..Limits::default()
        },
        grants: grants.clone(),
    }
}

/// A local HTTP server answering `ok`, for the JS and Python examples' POST; returns its
/// address.
pub async fn local_server() -> anyhow::Result<std::net::SocketAddr> {
    let app = axum::Router::new().route("/", axum::routing::any(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// Measures one plugin: compile with an empty cache, load from the warm cache (a new host, as
/// after a restart), then `calls` sequential calls with `input`.
pub async fn measure(
    plugin: &'static str,
    wasm: &Path,
    input: &str,
    grants: &Grants,
    calls: usize,
) -> anyhow::Result<Row> {
    let cache = tempfile::tempdir()?;
    let size_bytes = std::fs::metadata(wasm)
        .with_context(|| format!("{}", wasm.display()))?
        .len();
    let cold_host = PluginHost::new(settings(cache.path()))?;
    let t = Instant::now();
    let loaded = cold_host.load(spec(plugin, wasm, grants))?;
    let cold_compile = t.elapsed();
    anyhow::ensure!(!loaded.from_cache(), "cold load came from a cache");
    drop(loaded);
    drop(cold_host);

    let host = PluginHost::new(settings(cache.path()))?;
    let t = Instant::now();
    let loaded = host.load(spec(plugin, wasm, grants))?;
    let warm_load = t.elapsed();
    anyhow::ensure!(loaded.from_cache(), "warm load did not use the cache");

    let ctx = CallContext {
        rule_id: "bench".into(),
        action_index: 0,
        attempt: 1,
        idempotency_key: "bench-key".into(),
    };
    let event = CallEvent {
        id: "evt-bench".into(),
        source: "github".into(),
        event_type: "push".into(),
        received_at: "2026-01-01T00:00:00Z".into(),
        headers: vec![("x-github-event".into(), "push".into())],
        payload_json: crate::payload(1),
    };
    let mut samples = Vec::with_capacity(calls);
    for i in 0..calls + calls / 10 {
        let t = Instant::now();
        let report = host
            .call(&loaded, ctx.clone(), event.clone(), input.to_string())
            .await;
        let took = t.elapsed();
        anyhow::ensure!(
            report.result.is_ok(),
            "{plugin} call failed: {:?}",
            report.result
        );
        // The first tenth warms caches and the allocator; it is not counted.
        if i >= calls / 10 {
            samples.push(took);
        }
    }
    samples.sort_unstable();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    Ok(Row {
        plugin,
        size_bytes,
        cold_compile,
        warm_load,
        p50: at(0.5),
        p99: at(0.99),
        calls,
    })
}

/// Start-up with an empty compile cache: how long the registry takes to be built (what the
/// server waits for before it listens), and when each plugin becomes ready.
pub struct Startup {
    pub registry_built: Duration,
    pub ready: Vec<(String, Duration)>,
}

/// Builds a registry from a config naming `plugins` (name and .wasm), with an empty cache.
pub async fn startup(plugins: &[(&str, &Path)]) -> anyhow::Result<Startup> {
    let dir = tempfile::tempdir()?;
    let mut config = String::from(
        "listen: 127.0.0.1:0\ninsecure_http: true\nstore: sqlite://hookwise.db\nplugins:\n",
    );
    for (name, wasm) in plugins {
        config.push_str(&format!(
            "  - {{ name: {name}, path: \"{}\", limits: {{ memory: 64MiB }} }}\n",
            wasm.display()
        ));
    }
    let path = dir.path().join("hookwise.yaml");
    std::fs::write(&path, config)?;
    let config = hookwise::config::Config::load(&path)
        .map_err(|d| anyhow::anyhow!("bench config: {d:?}"))?;
    let t = Instant::now();
    let registry = hookwise::plugin_host::Registry::from_config(&config)
        .await
        .map_err(|p| anyhow::anyhow!("{}", p.join("; ")))?;
    let registry_built = t.elapsed();
    let mut waits = tokio::task::JoinSet::new();
    for (name, _) in plugins {
        let registry = registry.clone();
        let name = name.to_string();
        waits.spawn(async move {
            let loaded = registry.ready(&name).await;
            (name, loaded.map(|_| t.elapsed()))
        });
    }
    let mut ready = Vec::new();
    while let Some(joined) = waits.join_next().await {
        let (name, took) = joined?;
        ready.push((name, took.map_err(|e| anyhow::anyhow!(e))?));
    }
    ready.sort_by_key(|(_, took)| *took);
    Ok(Startup {
        registry_built,
        ready,
    })
}
