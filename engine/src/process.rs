//! Settings of the hookwise process itself, made first thing in `main`.

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
