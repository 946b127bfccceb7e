//! The plugins of a running hookwise: one host built from the config, and every configured
//! plugin (the built-in ones from the components embedded in the binary) loaded and linked
//! once at start-up. A plugin whose compiled code is in the compile cache is ready before the
//! server starts; one that must be compiled (seconds for an interpreter such as the
//! JavaScript or Python runtimes) compiles in the background, so that it does not hold up the
//! other plugins: the dispatcher claims none of its actions until it is ready.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;

use super::builtin;
use super::http::PluginTls;
use super::sql::{Dialect, SqlExecutor};
use super::{
    DbExecutor, Grants, HostSettings, Limits, LoadedPlugin, PluginHost, PluginSpec, WasmSource,
};
use crate::config::{Config, Plugin};

/// Folder (beside the store, under the config's folder) of compiled plugins.
pub const CACHE_DIR: &str = "hookwise-cache";

/// Where a configured plugin's loading stands.
#[derive(Clone)]
enum Loading {
    /// Compiling in the background (its compiled code was not in the cache).
    Compiling,
    Ready(LoadedPlugin),
    /// The background compile or link failed; why. Its actions wait for a restart with a
    /// plugin that loads.
    Failed(String),
}

/// Where a configured plugin stands, as the admin API and the dashboard show it.
pub enum PluginStatus {
    Ready(LoadedPlugin),
    /// Compiling in the background; its actions wait.
    Compiling,
    /// Not configured, or its compile or link failed (why); its actions wait.
    Unavailable(String),
}

impl PluginStatus {
    /// `status` and, by state, `abi` and `sha256` or `reason`, into a JSON object.
    pub fn describe(&self, entry: &mut serde_json::Value) {
        match self {
            PluginStatus::Ready(loaded) => {
                entry["status"] = "ready".into();
                entry["abi"] = serde_json::json!(loaded.abi());
                entry["sha256"] = loaded.sha256().into();
            }
            PluginStatus::Compiling => entry["status"] = "compiling".into(),
            PluginStatus::Unavailable(why) => {
                entry["status"] = "unavailable".into();
                entry["reason"] = why.as_str().into();
            }
        }
    }
}

struct Entry {
    loading: watch::Receiver<Loading>,
    concurrency: Option<u32>,
}

/// The loaded plugins. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    host: PluginHost,
    entries: Arc<HashMap<String, Entry>>,
}

impl Registry {
    /// Builds the host and loads every plugin of `config`: files from their `path`, built-in
    /// plugins from the components embedded in this binary. A plugin that must be compiled
    /// is checked here (its spec, its file, that it is WebAssembly) and compiled in the
    /// background. All problems found here are returned at once.
    pub async fn from_config(config: &Config) -> Result<Registry, Vec<String>> {
        let db = connect_databases(config).await?;
        let settings = HostSettings {
            cache_dir: Some(config.base_dir.join(CACHE_DIR)),
            db,
            http_tls: plugin_tls(&config.plugins).map_err(|e| vec![e])?,
            // Counting fuel costs a little on every call; only when some plugin has a budget.
            consume_fuel: config.plugins.iter().any(|p| p.fuel.is_some()),
            ..HostSettings::default()
        };
        let host = PluginHost::new(settings).map_err(|e| vec![e.to_string()])?;
        let mut entries = HashMap::new();
        let mut problems = Vec::new();
        let mut to_compile = Vec::new();
        for plugin in &config.plugins {
            let wasm = match &plugin.path {
                Some(path) => WasmSource::Path(path.clone()),
                None => match builtin::component(&plugin.name) {
                    Some(bytes) => WasmSource::Bytes(bytes.to_vec()),
                    None => {
                        problems.push(format!(
                            "plugin `{}` has no path and is not built in",
                            plugin.name
                        ));
                        continue;
                    }
                },
            };
            let prepared = match host.prepare(spec_for(plugin, wasm)) {
                Ok(prepared) => prepared,
                Err(e) => {
                    problems.push(e.to_string());
                    continue;
                }
            };
            let loading = if prepared.compiled() {
                // Loading compiled code takes milliseconds; a failure stops the start-up.
                match link(&host, prepared, false).await {
                    Ok(loaded) => watch::channel(Loading::Ready(loaded)).1,
                    Err(e) => {
                        problems.push(e);
                        continue;
                    }
                }
            } else {
                let (tx, rx) = watch::channel(Loading::Compiling);
                to_compile.push((prepared, tx));
                rx
            };
            entries.insert(
                plugin.name.clone(),
                Entry {
                    loading,
                    concurrency: plugin.concurrency,
                },
            );
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        tokio::spawn(compile_in_background(host.clone(), to_compile));
        Ok(Registry {
            host,
            entries: Arc::new(entries),
        })
    }

    pub fn host(&self) -> &PluginHost {
        &self.host
    }

    /// The loaded plugin called `name`, or why it cannot run now.
    pub fn get(&self, name: &str) -> Result<LoadedPlugin, String> {
        match self.status(name) {
            PluginStatus::Ready(loaded) => Ok(loaded),
            PluginStatus::Compiling => Err(format!("plugin `{name}` is still compiling")),
            PluginStatus::Unavailable(why) => Err(why),
        }
    }

    /// Where the plugin called `name` stands.
    pub fn status(&self, name: &str) -> PluginStatus {
        let Some(entry) = self.entries.get(name) else {
            return PluginStatus::Unavailable(format!("plugin `{name}` is not configured"));
        };
        match &*entry.loading.borrow() {
            Loading::Ready(loaded) => PluginStatus::Ready(loaded.clone()),
            Loading::Compiling => PluginStatus::Compiling,
            Loading::Failed(why) => PluginStatus::Unavailable(why.clone()),
        }
    }

    /// Whether the plugin called `name` is loaded and can run now.
    pub fn is_ready(&self, name: &str) -> bool {
        self.entries
            .get(name)
            .is_some_and(|e| matches!(*e.loading.borrow(), Loading::Ready(_)))
    }

    /// Names of the plugins that are not ready (compiling, or failed to load): their actions
    /// must not be claimed.
    pub fn not_ready(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .filter(|(_, e)| !matches!(*e.loading.borrow(), Loading::Ready(_)))
            .map(|(name, _)| name.as_str())
    }

    /// The loaded plugin called `name`, once its background compile is over.
    pub async fn ready(&self, name: &str) -> Result<LoadedPlugin, String> {
        if let Some(entry) = self.entries.get(name) {
            compiled(entry.loading.clone()).await;
        }
        self.get(name)
    }

    /// One future per background compile still running, each resolving when it ends.
    pub fn compiles(&self) -> Vec<impl std::future::Future<Output = ()> + Send + 'static> {
        self.entries
            .values()
            .filter(|e| matches!(*e.loading.borrow(), Loading::Compiling))
            .map(|e| compiled(e.loading.clone()))
            .collect()
    }

    /// Calls of `name` that may run at once on this node (None: only the worker pool limits).
    pub fn concurrency(&self, name: &str) -> Option<u32> {
        self.entries.get(name).and_then(|e| e.concurrency)
    }

    /// Names of plugins with a concurrency limit.
    pub fn limited(&self) -> impl Iterator<Item = (&str, u32)> {
        self.entries
            .iter()
            .filter_map(|(name, e)| e.concurrency.map(|c| (name.as_str(), c)))
    }
}

/// Resolves once `loading` is past compiling (ready or failed).
async fn compiled(mut loading: watch::Receiver<Loading>) {
    // An error only when the sender is gone, which it is not before a result.
    let _ = loading.wait_for(|l| !matches!(l, Loading::Compiling)).await;
}

/// Compiles and links `plugins` one after the other, smallest first: each compile already
/// uses every core, and compiling side by side made a 0.1 MB plugin wait 12 s for a 13 MB
/// interpreter beside it; one by one it is ready in about 0.1 s.
async fn compile_in_background(
    host: PluginHost,
    mut plugins: Vec<(super::PreparedPlugin, watch::Sender<Loading>)>,
) {
    plugins.sort_by_key(|(prepared, _)| prepared.size());
    for (prepared, tx) in plugins {
        let name = prepared.name().to_string();
        tracing::info!(plugin = %name, "plugin compiling in the background");
        let compiled_apart = match crate::process::plugin_compiler() {
            Some(compiler) => match host.compile_apart(&prepared, compiler).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(plugin = %name, error = %e, "compiling in a process of its own failed; compiling here");
                    false
                }
            },
            None => false,
        };
        let loading = match link(&host, prepared, !compiled_apart).await {
            Ok(loaded) => {
                tracing::info!(plugin = %name, abi = ?loaded.abi(), compiled_apart, "plugin loaded");
                Loading::Ready(loaded)
            }
            Err(e) => {
                tracing::error!(
                    plugin = %name,
                    error = %e,
                    "plugin could not be loaded; its actions wait for a restart"
                );
                Loading::Failed(e)
            }
        };
        let _ = tx.send(loading);
    }
}

/// Compiles (or loads) and links on a blocking thread: compiling is CPU-bound. When it
/// `compiles`, the compile's memory is given back as soon as it is over.
async fn link(
    host: &PluginHost,
    prepared: super::PreparedPlugin,
    compiles: bool,
) -> Result<LoadedPlugin, String> {
    let name = prepared.name().to_string();
    let host = host.clone();
    let linked = tokio::task::spawn_blocking(move || {
        let linked = host.link(prepared);
        if compiles {
            crate::process::return_freed_memory();
        }
        linked
    });
    match linked.await {
        Ok(Ok(loaded)) => Ok(loaded),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("loading plugin `{name}`: {e}")),
    }
}

/// The host-side spec of a configured plugin whose component is `wasm`. Built-in plugins
/// get exactly the limits and grants the config gives them (nothing by default).
pub fn spec_for(plugin: &Plugin, wasm: WasmSource) -> PluginSpec {
    PluginSpec {
        name: plugin.name.clone(),
        wasm,
        limits: Limits {
            memory_bytes: plugin.memory,
            timeout: plugin.timeout,
            fuel: plugin.fuel,
            ..Limits::default()
        },
        grants: Grants {
            http: plugin.allow_http.clone(),
            db: plugin.allow_db.clone(),
        },
    }
}

/// What the HTTPS of `plugins` trusts: the public web PKI, plus each one's `http_ca_certs`.
pub fn plugin_tls(plugins: &[Plugin]) -> Result<PluginTls, String> {
    plugins
        .iter()
        .try_fold(PluginTls::default(), |tls, plugin| {
            tls.with_extra_roots(&plugin.name, &plugin.http_ca_certs)
                .map_err(|e| format!("plugin `{}`: a CA certificate: {e}", plugin.name))
        })
}

/// Opens the `connections` that some plugin is granted.
async fn connect_databases(config: &Config) -> Result<Option<Arc<dyn DbExecutor>>, Vec<String>> {
    let granted = config
        .plugins
        .iter()
        .flat_map(|p| p.allow_db.iter().map(String::as_str));
    connect_granted(config, granted).await
}

/// Opens the `connections` of `config` named in `granted` (None when none is); every
/// connection that is not configured or does not open is a problem.
pub async fn connect_granted<'a>(
    config: &Config,
    granted: impl IntoIterator<Item = &'a str>,
) -> Result<Option<Arc<dyn DbExecutor>>, Vec<String>> {
    let granted: std::collections::BTreeSet<&str> = granted.into_iter().collect();
    if granted.is_empty() {
        return Ok(None);
    }
    let mut executor = SqlExecutor::new();
    let mut problems = Vec::new();
    for name in granted {
        let Some(url) = config.connections.get(name) else {
            problems.push(format!("connection `{name}` is not configured"));
            continue;
        };
        let url = url.expose();
        let result = match (Dialect::of_url(url), url.strip_prefix("sqlite://")) {
            (Ok(Dialect::Sqlite), Some(path)) => {
                // Relative to the config file's folder, created when missing.
                let path = config.base_dir.join(path.split('?').next().unwrap_or(path));
                executor
                    .connect(name, &format!("sqlite://{}?mode=rwc", path.display()))
                    .await
            }
            (Ok(_), _) => executor.connect(name, url).await,
            (Err(e), _) => Err(e),
        }
        .map_err(|e| e.to_string());
        if let Err(e) = result {
            problems.push(format!("connection `{name}`: {e}"));
        }
    }
    if problems.is_empty() {
        Ok(Some(Arc::new(executor)))
    } else {
        Err(problems)
    }
}
