//! On-disk cache of compiled plugins, keyed by the sha256 of the wasm bytes
//! and a hash of the engine's compilation settings, so that a restart loads
//! native code instead of compiling again.
//!
//! Safety: `Component::deserialize` trusts its input completely. Only files
//! this module wrote into the operator's cache directory (in this process, or
//! in the `hookwise plugins compile` process it started) are ever
//! deserialised; the directory is created private (0700) and files are
//! written atomically (temp file + rename).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Hit/miss counters of the compile cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Loads served from the cache directory.
    pub hits: u64,
    /// Loads that compiled (and, with a cache directory, stored the result).
    pub compiled: u64,
}

#[derive(Debug)]
pub(crate) struct CompileCache {
    dir: Option<PathBuf>,
    engine_hash: String,
    hits: AtomicU64,
    compiled: AtomicU64,
}

/// What kind of artifact a cache entry holds.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ArtifactKind {
    Component,
    Module,
}

impl ArtifactKind {
    fn of(abi: super::PluginAbi) -> ArtifactKind {
        match abi {
            super::PluginAbi::Component => ArtifactKind::Component,
            super::PluginAbi::Command => ArtifactKind::Module,
        }
    }

    fn extension(self) -> &'static str {
        match self {
            ArtifactKind::Component => "cwasm",
            ArtifactKind::Module => "mwasm",
        }
    }
}

/// sha256 of `bytes`, hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl CompileCache {
    pub(crate) fn new(engine: &Engine, dir: Option<PathBuf>) -> std::io::Result<Self> {
        if let Some(dir) = &dir {
            create_private_dir(dir)?;
        }
        // Stable within one build of the host, which is all the cache needs:
        // a different wasmtime or different settings give a different key.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_hash = format!("{:016x}", hasher.finish());
        Ok(Self {
            dir,
            engine_hash,
            hits: AtomicU64::new(0),
            compiled: AtomicU64::new(0),
        })
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            compiled: self.compiled.load(Ordering::Relaxed),
        }
    }

    fn path(&self, sha256: &str, kind: ArtifactKind) -> Option<PathBuf> {
        self.dir.as_ref().map(|dir| {
            dir.join(format!(
                "{sha256}-{}.{}",
                self.engine_hash,
                kind.extension()
            ))
        })
    }

    /// Whether compiled code for these bytes is stored (a later load may still compile, when
    /// the file turns out unreadable).
    pub(crate) fn has(&self, sha256: &str, abi: super::PluginAbi) -> bool {
        self.path(sha256, ArtifactKind::of(abi))
            .is_some_and(|p| p.is_file())
    }

    /// Compiles `wasm` and stores the compiled code, for another process with an engine of the
    /// same settings to load (`hookwise plugins compile`). Unlike on a load, a file that
    /// cannot be written is an error: storing it is the whole point.
    pub(crate) fn store(
        &self,
        engine: &Engine,
        abi: super::PluginAbi,
        wasm: &[u8],
    ) -> wasmtime::Result<()> {
        let Some(path) = self.path(&sha256_hex(wasm), ArtifactKind::of(abi)) else {
            wasmtime::bail!("no compile cache folder");
        };
        // The same bytes `serialize` gives, without building the code in this process's memory.
        let compiled = match abi {
            super::PluginAbi::Component => engine.precompile_component(wasm)?,
            super::PluginAbi::Command => engine.precompile_module(wasm)?,
        };
        self.compiled.fetch_add(1, Ordering::Relaxed);
        write_atomically(&path, &compiled)?;
        Ok(())
    }

    /// Loads a compiled component, compiling and storing it on a miss.
    /// Returns the component and whether it came from the cache.
    pub(crate) fn component(
        &self,
        engine: &Engine,
        sha256: &str,
        wasm: &[u8],
    ) -> wasmtime::Result<(Component, bool)> {
        let path = self.path(sha256, ArtifactKind::Component);
        if let Some(path) = &path
            && path.is_file()
        {
            // SAFETY: the file is one this cache wrote with
            // `Component::serialize` for an engine with the same
            // compatibility hash (part of the file name), in a directory
            // only the host's user can write.
            if let Ok(component) = unsafe { Component::deserialize_file(engine, path) } {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok((component, true));
            }
        }
        let component = Component::new(engine, wasm)?;
        self.compiled.fetch_add(1, Ordering::Relaxed);
        if let Some(path) = &path {
            // A cache that cannot be written only costs a compile next time.
            let _ = component
                .serialize()
                .map(|bytes| write_atomically(path, &bytes));
        }
        Ok((component, false))
    }

    /// Same as [`Self::component`] for a core module (command-module plugins).
    pub(crate) fn module(
        &self,
        engine: &Engine,
        sha256: &str,
        wasm: &[u8],
    ) -> wasmtime::Result<(wasmtime::Module, bool)> {
        let path = self.path(sha256, ArtifactKind::Module);
        if let Some(path) = &path
            && path.is_file()
        {
            // SAFETY: as for components above.
            if let Ok(module) = unsafe { wasmtime::Module::deserialize_file(engine, path) } {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok((module, true));
            }
        }
        let module = wasmtime::Module::new(engine, wasm)?;
        self.compiled.fetch_add(1, Ordering::Relaxed);
        if let Some(path) = &path {
            let _ = module
                .serialize()
                .map(|bytes| write_atomically(path, &bytes));
        }
        Ok((module, false))
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    // Unique per write: two threads compiling the same plugin at once must
    // not write into one temp file (the loser would scribble into the file
    // the winner just renamed into place).
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
