//! Builds the first-party plugins (`plugins/first-party`: notify, call-api, write-db) as
//! WebAssembly components, so that `src/plugin_host/builtin.rs` can embed them and
//! `hookwise serve` ships them with no extra step.
//!
//! The plugins are a cargo workspace of their own, built with the same cargo for
//! `wasm32-wasip2` (release, `--locked`) into `$OUT_DIR/first-party`. Packagers who build the
//! components elsewhere can point `HOOKWISE_PREBUILT_PLUGINS` at a folder holding
//! `notify.wasm`, `call_api.wasm` and `write_db.wasm` instead.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
/// File names cargo gives the three components (library crates: `-` becomes `_`).
const COMPONENTS: [&str; 3] = ["notify.wasm", "call_api.wasm", "write_db.wasm"];
/// What the components are built from, relative to `plugins/`.
const WATCHED: [&str; 13] = [
    "first-party/Cargo.toml",
    "first-party/Cargo.lock",
    "first-party/common/Cargo.toml",
    "first-party/common/src",
    "first-party/notify/Cargo.toml",
    "first-party/notify/src",
    "first-party/call-api/Cargo.toml",
    "first-party/call-api/src",
    "first-party/write-db/Cargo.toml",
    "first-party/write-db/src",
    "sdk/Cargo.toml",
    "sdk/src",
    "wit",
];
/// Variables of the outer build that must not leak into the plugin build: flags meant for
/// the host target, a forced target, and the clippy wrapper (`cargo clippy` lints the
/// plugins in their own workspace).
const SCRUBBED_ENV: [&str; 7] = [
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "RUSTC_WORKSPACE_WRAPPER",
    "CLIPPY_ARGS",
    "CARGO_TARGET_DIR",
];

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let plugins = manifest_dir.join("../plugins");
    // Sources only: a `target/` left in plugins/ by a manual build must not rerun this.
    for path in WATCHED {
        println!("cargo:rerun-if-changed={}", plugins.join(path).display());
    }
    println!("cargo:rerun-if-env-changed=HOOKWISE_PREBUILT_PLUGINS");
    let out = PathBuf::from(env("OUT_DIR")).join("first-party");
    let dest = out.join(TARGET).join("release");

    if let Some(prebuilt) = std::env::var_os("HOOKWISE_PREBUILT_PLUGINS") {
        copy_prebuilt(Path::new(&prebuilt), &dest);
        return;
    }
    check_target();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut command = Command::new(&cargo);
    command.current_dir(plugins.join("first-party")).args([
        "build",
        "--release",
        "--locked",
        "--target",
        TARGET,
    ]);
    for name in SCRUBBED_ENV {
        command.env_remove(name);
    }
    command.env("CARGO_TARGET_DIR", &out);
    let status = command
        .status()
        .unwrap_or_else(|e| fail(&format!("could not run {cargo}: {e}")));
    if !status.success() {
        fail(&format!(
            "building the first-party plugins in plugins/first-party failed ({status}); \
             the cargo output above says why"
        ));
    }
    for name in COMPONENTS {
        if !dest.join(name).is_file() {
            fail(&format!("{} was not produced", dest.join(name).display()));
        }
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| fail(&format!("cargo did not set {name}")))
}

/// Fails early, with the fix, when the toolchain has no standard library for the target.
fn check_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(sysroot) = sysroot
        && !sysroot.join("lib/rustlib").join(TARGET).is_dir()
    {
        fail(&format!(
            "the Rust target {TARGET} is not installed, and hookwise embeds plugins built for it.\n\
             Run:  rustup target add {TARGET}\n\
             (rust-toolchain.toml lists it, so rustup normally installs it; or set \
             HOOKWISE_PREBUILT_PLUGINS to a folder with prebuilt components)"
        ));
    }
}

fn copy_prebuilt(from: &Path, to: &Path) {
    if let Err(e) = std::fs::create_dir_all(to) {
        fail(&format!("creating {}: {e}", to.display()));
    }
    for name in COMPONENTS {
        let source = from.join(name);
        println!("cargo:rerun-if-changed={}", source.display());
        if let Err(e) = std::fs::copy(&source, to.join(name)) {
            fail(&format!(
                "HOOKWISE_PREBUILT_PLUGINS: copying {}: {e}",
                source.display()
            ));
        }
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}
