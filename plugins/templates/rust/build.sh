#!/usr/bin/env bash
# Builds __NAME__.wasm (a component for hookwise). Needs the Rust toolchain; the first build
# downloads the crates (after that it works offline).
set -euo pipefail
cd "$(dirname "$0")"
rustup target add wasm32-wasip2 >/dev/null
cargo build --release --target wasm32-wasip2
cp "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/__CRATE__.wasm" __NAME__.wasm
echo "built $(pwd)/__NAME__.wasm"
