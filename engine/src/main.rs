//! The `hookwise` binary: parse arguments, hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    hookwise::cli::run(hookwise::cli::Cli::parse())
}
