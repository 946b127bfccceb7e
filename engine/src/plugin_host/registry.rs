//! The plugins of a running hookwise: one host built from the config, and every configured
//! plugin (the built-in ones from the components embedded in the binary) compiled, or
//! loaded from the compile cache, and linked once at start-up.

use std::collections::HashMap;
use std::sync::Arc;

use super::builtin;
use super::http::PluginTls;
use super::sql::{Dialect, SqlExecutor};
use super::{
    DbExecutor, Grants, HostSettings, Limits, LoadedPlugin, PluginHost, PluginSpec, WasmSource,
};
use crate::config::{Config, Plugin};

/// Folder (beside the store, under the config's folder) of compiled plugins.
pub const CACHE_DIR: &str = "hookwise-cache";

/// The loaded plugins. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    host: PluginHost,
    entries: Arc<HashMap<String, (LoadedPlugin, Option<u32>)>>,
}

impl Registry {
    /// Builds the host and loads every plugin of `config`: files from their `path`, built-in
    /// plugins from the components embedded in this binary. All problems are returned at once.
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
            let host = host.clone();
            let spec = spec_for(plugin, wasm);
            // Compiling is CPU-bound; keep it off the async workers.
            match tokio::task::spawn_blocking(move || host.load(spec)).await {
                Ok(Ok(loaded)) => {
                    tracing::info!(
                        plugin = %plugin.name,
                        builtin = plugin.path.is_none(),
                        abi = ?loaded.abi(),
                        cached = loaded.from_cache(),
                        "plugin loaded"
                    );
                    entries.insert(plugin.name.clone(), (loaded, plugin.concurrency));
                }
                Ok(Err(e)) => problems.push(e.to_string()),
                Err(e) => problems.push(format!("loading plugin `{}`: {e}", plugin.name)),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Registry {
            host,
            entries: Arc::new(entries),
        })
    }

    pub fn host(&self) -> &PluginHost {
        &self.host
    }

    /// The loaded plugin called `name`, or why it cannot run.
    pub fn get(&self, name: &str) -> Result<&LoadedPlugin, String> {
        match self.entries.get(name) {
            Some((p, _)) => Ok(p),
            None => Err(format!("plugin `{name}` is not configured")),
        }
    }

    /// Calls of `name` that may run at once on this node (None: only the worker pool limits).
    pub fn concurrency(&self, name: &str) -> Option<u32> {
        self.entries.get(name).and_then(|(_, c)| *c)
    }

    /// Names of plugins with a concurrency limit.
    pub fn limited(&self) -> impl Iterator<Item = (&str, u32)> {
        self.entries
            .iter()
            .filter_map(|(name, (_, c))| c.map(|c| (name.as_str(), c)))
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
