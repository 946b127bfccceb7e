#!/usr/bin/env bash
# Builds the Zig example plugin into OUT_DIR/zig.wasm.
#
#   plugins/examples/zig/build.sh OUT_DIR
#
# Zig comes from PyPI (`ziglang`, the version pinned in requirements.txt), installed into a
# venv in OUT_DIR/tools on first use; nothing is installed globally or into the source tree,
# and Zig's caches live in OUT_DIR/tools too. After the first run the script works offline.
# The module is rebuilt only when main.zig, the SDK, this script or the pinned version changed
# (a sha256 stamp next to the .wasm).
#
# Needs: python3 with venv, sha256sum.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi

here="$(cd "$(dirname "$0")" && pwd)"
sdk="$(cd "$here/../../sdk/zig" && pwd)"
mkdir -p "$1"
out="$(cd "$1" && pwd)"
tools="$out/tools"
mkdir -p "$tools"

# Runs "$@" unless STAMP holds KEY; writes KEY to STAMP after success.
unless_stamped() {
  local stamp="$1" key="$2"
  shift 2
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$key" ]]; then
    return 0
  fi
  rm -f "$stamp"
  "$@"
  echo "$key" >"$stamp"
}

install_zig() {
  echo "zig/build.sh: pip install -r requirements.txt into $tools/zig-venv" >&2
  rm -rf "$tools/zig-venv"
  python3 -m venv "$tools/zig-venv"
  "$tools/zig-venv/bin/pip" install --quiet --disable-pip-version-check --no-input \
    -r "$here/requirements.txt"
}

build_zig() {
  echo "zig/build.sh: zig build-exe main.zig -> $out/zig.wasm" >&2
  export ZIG_GLOBAL_CACHE_DIR="$tools/zig-cache" ZIG_LOCAL_CACHE_DIR="$tools/zig-cache"
  # The SDK is its own module (`@import("hookwise")`): Zig does not import files outside
  # the root source file's directory. `--stack`: Zig's default 16 MiB stack would make every
  # call start with 16 MiB of memory; 256 KiB is plenty here.
  (cd "$tools" && "$tools/zig-venv/bin/python" -m ziglang build-exe \
    -target wasm32-wasi -O ReleaseSmall --stack 262144 --name zig \
    --dep hookwise -Mroot="$here/main.zig" -Mhookwise="$sdk/hookwise.zig" \
    -femit-bin="$out/zig.wasm.tmp")
  mv "$out/zig.wasm.tmp" "$out/zig.wasm"
}

unless_stamped "$tools/zig-venv.stamp" "$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)" \
  install_zig
unless_stamped "$out/zig.wasm.stamp" \
  "$(cd "$here/../.." && sha256sum examples/zig/build.sh examples/zig/main.zig examples/zig/requirements.txt sdk/zig/hookwise.zig | sha256sum | cut -d' ' -f1)" \
  build_zig
