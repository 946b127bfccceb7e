//! The `hookwise` binary: parse arguments, hand over to the library.

use clap::Parser;

/// mimalloc instead of the system allocator: the engine allocates many small, short-lived
/// values per event, and glibc malloc showed up as the top cost in profiles (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    hookwise::process::prefer_small_pages();
    hookwise::process::bound_malloc_arenas();
    hookwise::cli::run(hookwise::cli::Cli::parse())
}
