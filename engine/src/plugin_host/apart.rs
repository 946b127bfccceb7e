//! Compiling a plugin in a process of its own: `hookwise serve` runs its own binary as
//! `hookwise plugins compile` for every plugin missing from the compile cache, and loads the
//! compiled code the child stored there.
//!
//! The compiler's memory then never becomes the server's: compiling the three built-in
//! plugins (0.2-0.4 MB each) into an empty cache raised the server's peak resident memory
//! from 38.5 MiB to 71-72.5 MiB even with the freed memory given back after each compile (its
//! heap to 40 MiB, cranelift's code to 4 MiB more); apart, 40-41 MiB. An interpreter of 13 MB
//! takes far more. A compile that crashes or runs out of memory ends the
//! child, not the server. When the child fails, the server compiles in its own process, which
//! gives the real compile error.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use clap::Args;
use tokio::io::AsyncWriteExt;

use super::cache::CompileCache;
use super::{HostError, HostSettings, PluginHost, PreparedPlugin};

/// Longest stderr of a failed child kept for the log.
const STDERR_KEPT: usize = 4096;

/// The engine settings a compile depends on, as the child receives them on its command line.
/// Compiled code is only loaded by an engine with the same settings (the cache's file names
/// carry a hash of them), so the child builds its engine from exactly the server's.
#[derive(Debug, Clone, Args)]
pub struct CompileArgs {
    /// The compile cache to store the compiled code in.
    #[arg(long)]
    pub cache_dir: PathBuf,
    /// Whether the engine counts fuel.
    #[arg(long)]
    pub consume_fuel: bool,
    /// Plugin instances that may exist at once.
    #[arg(long)]
    pub max_instances: u32,
    /// Largest linear memory any plugin may be granted, in bytes.
    #[arg(long)]
    pub max_memory_bytes: u64,
}

impl CompileArgs {
    /// The arguments that give a child `settings`' engine; `None` without a cache to share.
    fn of(settings: &HostSettings) -> Option<CompileArgs> {
        Some(CompileArgs {
            cache_dir: settings.cache_dir.clone()?,
            consume_fuel: settings.consume_fuel,
            max_instances: settings.max_instances,
            max_memory_bytes: settings.max_memory_bytes,
        })
    }

    fn to_args(&self) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = vec![
            "plugins".into(),
            "compile".into(),
            "--cache-dir".into(),
            self.cache_dir.clone().into(),
            "--max-instances".into(),
            self.max_instances.to_string().into(),
            "--max-memory-bytes".into(),
            self.max_memory_bytes.to_string().into(),
        ];
        if self.consume_fuel {
            args.push("--consume-fuel".into());
        }
        args
    }

    fn settings(&self) -> HostSettings {
        HostSettings {
            cache_dir: Some(self.cache_dir.clone()),
            consume_fuel: self.consume_fuel,
            max_instances: self.max_instances,
            max_memory_bytes: self.max_memory_bytes,
            ..HostSettings::default()
        }
    }
}

/// The child's side: compiles `wasm` (a component or a command module) and stores the
/// compiled code in the cache that `args` name.
pub fn compile_into_cache(args: &CompileArgs, wasm: &[u8]) -> Result<(), HostError> {
    let settings = args.settings();
    let engine = wasmtime::Engine::new(&super::engine_config(&settings))
        .map_err(|e| HostError::Engine(format!("{e:#}")))?;
    let cache = CompileCache::new(&engine, settings.cache_dir.clone()).map_err(|source| {
        HostError::CacheDir {
            path: args.cache_dir.clone(),
            source,
        }
    })?;
    let abi = super::detect_abi(wasm).ok_or_else(|| HostError::NotWasm {
        name: "stdin".to_string(),
    })?;
    cache
        .store(&engine, abi, wasm)
        .map_err(|e| HostError::Compile {
            name: "stdin".to_string(),
            message: format!("{e:#}"),
        })
}

impl PluginHost {
    /// The server's side: has `compiler` (a hookwise binary) compile `prepared` into this
    /// host's compile cache, so that [`PluginHost::link`] then loads it. An error says why the
    /// child did not (the caller then compiles here).
    pub async fn compile_apart(
        &self,
        prepared: &PreparedPlugin,
        compiler: &Path,
    ) -> Result<(), String> {
        let Some(args) = CompileArgs::of(&self.inner.settings) else {
            return Err("no compile cache to hand the compiled code over in".to_string());
        };
        let mut child = tokio::process::Command::new(compiler)
            .args(args.to_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", compiler.display()))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A write error means the child ended early; its status and stderr say why.
            let _ = stdin.write_all(&prepared.bytes).await;
        }
        let output = child
            .wait_with_output()
            .await
            .map_err(|e| format!("waiting for the compiler: {e}"))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let stderr: String = stderr.trim().chars().take(STDERR_KEPT).collect();
            return Err(format!("the compiler process {}: {stderr}", output.status));
        }
        if !self.inner.cache.has(&prepared.sha256, prepared.abi) {
            return Err("the compiler process stored nothing this engine can load".to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::plugin_host::{Limits, PluginSpec, WasmSource, builtin};

    fn settings(cache: &Path) -> HostSettings {
        HostSettings {
            cache_dir: Some(cache.to_path_buf()),
            consume_fuel: true,
            max_instances: 7,
            max_memory_bytes: 64 * 1024 * 1024,
            ..HostSettings::default()
        }
    }

    fn notify() -> PluginSpec {
        PluginSpec {
            name: "notify".to_string(),
            wasm: WasmSource::Bytes(builtin::component("notify").unwrap().to_vec()),
            limits: Limits {
                memory_bytes: 16 * 1024 * 1024,
                ..Limits::default()
            },
            grants: Default::default(),
        }
    }

    /// What the child stores, the server's engine loads instead of compiling: the child's
    /// engine is built from the arguments exactly as the server's.
    #[test]
    fn what_the_child_compiles_the_server_loads() {
        let cache = tempfile::tempdir().unwrap();
        let settings = settings(cache.path());
        let args = CompileArgs::of(&settings).unwrap();
        let command = crate::cli::Cli::try_parse_from(
            std::iter::once("hookwise".into()).chain(args.to_args()),
        )
        .unwrap();
        let crate::cli::Command::Plugins {
            command: crate::cli::plugins::PluginsCommand::Compile(parsed),
        } = command.command
        else {
            panic!("not the compile command: {command:?}");
        };
        compile_into_cache(&parsed, builtin::component("notify").unwrap()).unwrap();

        let host = PluginHost::new(settings).unwrap();
        let prepared = host.prepare(notify()).unwrap();
        assert!(prepared.compiled());
        let loaded = host.link(prepared).unwrap();
        assert!(loaded.from_cache());
        assert_eq!(host.cache_stats().compiled, 0);
    }

    /// A different engine setting is a different engine: its code is not taken for ours.
    #[test]
    fn code_for_other_settings_is_not_loaded() {
        let cache = tempfile::tempdir().unwrap();
        let mut args = CompileArgs::of(&settings(cache.path())).unwrap();
        args.consume_fuel = false;
        compile_into_cache(&args, builtin::component("notify").unwrap()).unwrap();
        let host = PluginHost::new(settings(cache.path())).unwrap();
        assert!(!host.prepare(notify()).unwrap().compiled());
    }

    /// Bytes that are not WebAssembly, and a compiler that fails, are errors that say so.
    #[tokio::test]
    async fn failures_say_why() {
        let cache = tempfile::tempdir().unwrap();
        let args = CompileArgs::of(&settings(cache.path())).unwrap();
        let err = compile_into_cache(&args, b"not wasm").unwrap_err();
        assert!(matches!(err, HostError::NotWasm { .. }), "{err}");
        // A component's header and then garbage: the compile fails and nothing is stored.
        let broken = b"\0asm\x0d\0\x01\0\x7f\x7f\x7f";
        let err = compile_into_cache(&args, broken).unwrap_err();
        assert!(matches!(err, HostError::Compile { .. }), "{err}");
        assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);

        let host = PluginHost::new(settings(cache.path())).unwrap();
        let prepared = host.prepare(notify()).unwrap();
        let err = host
            .compile_apart(&prepared, Path::new("/bin/false"))
            .await
            .unwrap_err();
        assert!(err.contains("the compiler process exit status: 1"), "{err}");
        let err = host
            .compile_apart(&prepared, Path::new("/nonexistent/hookwise"))
            .await
            .unwrap_err();
        assert!(err.starts_with("starting /nonexistent/hookwise"), "{err}");
    }
}
