//! Settings of the hookwise process itself, made first thing in `main` (or by the command run).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Most glibc malloc arenas. Rust code allocates through mimalloc; the C allocator serves
/// SQLite (its page caches and statements), and glibc gives every thread that calls it an
/// arena of its own (up to 8 per core), each keeping its freed memory: six arenas held 14 MiB
/// after a drain run. Two arenas are enough for SQLite's threads, which mostly wait on I/O.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MALLOC_ARENAS: libc::c_int = 2;

/// Turns transparent huge pages off for this process (Linux; elsewhere a no-op).
///
/// mimalloc's arenas are eligible for huge pages, and where the kernel hands them out, the
/// first touch of any 2 MiB region makes all of it resident: an idle `hookwise serve` held
/// 28 MiB of huge pages out of 57 MiB resident (and 81 MiB at peak under load instead of
/// 57 MiB). With 4 KiB pages, resident memory is what is used. The flag is checked when a
/// page is faulted in, so it covers memory reserved before `main` too. Failure (an old
/// kernel) changes nothing else, so it is ignored.
pub fn prefer_small_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integer arguments and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Bounds the C allocator's arenas (see [`MALLOC_ARENAS`]); glibc only.
pub fn bound_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes plain integers; called before any thread but main exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
    }
}

/// Gives the memory that a finished compile freed back to the system, on this thread and on
/// each thread of the pool that wasmtime compiles on.
///
/// mimalloc keeps freed pages for reuse: a thread's pages until that thread allocates again
/// (the compile pool's threads then sit idle), and emptied ones for a second before it returns
/// them. Compiling the three built-in plugins into an empty cache in the process left 47-48 MiB
/// of heap behind (11 MiB with the cache filled); given back, 24-25 MiB, and the first start's
/// peak went from 79.5-81 MiB to 71-72.5 MiB. `hookwise serve` compiles in a process of its own
/// instead ([`compile_plugins_apart`]); this is for the compiles still made in the process.
pub fn return_freed_memory() {
    // SAFETY: `mi_collect` only walks the calling thread's own heap and the shared arenas.
    let collect = || unsafe { libmimalloc_sys::mi_collect(true) };
    rayon::broadcast(|_| collect());
    collect();
}

/// The binary that compiles plugins for this process, when it does not compile them itself.
static PLUGIN_COMPILER: OnceLock<PathBuf> = OnceLock::new();

/// Has plugins compiled by this very binary in processes of their own (`hookwise plugins
/// compile`), so that the compiler's memory never becomes this process's. For `hookwise
/// serve`; a library user (the tests) compiles in its own process. On Linux the binary is
/// `/proc/self/exe`, which stays this build even when the file is replaced by an upgrade.
pub fn compile_plugins_apart() {
    let exe = if Path::new("/proc/self/exe").exists() {
        PathBuf::from("/proc/self/exe")
    } else {
        match std::env::current_exe() {
            Ok(exe) => exe,
            // Without a path to itself, the process compiles its plugins itself.
            Err(_) => return,
        }
    };
    let _ = PLUGIN_COMPILER.set(exe);
}

/// The binary set by [`compile_plugins_apart`], if any.
pub fn plugin_compiler() -> Option<&'static Path> {
    PLUGIN_COMPILER.get().map(PathBuf::as_path)
}
