#!/usr/bin/env bash
# Builds __NAME__.wasm from main.zig and the hookwise SDK (sdk/hookwise.zig).
#
#   ./build.sh
#
# Zig comes from PyPI (`ziglang`, pinned in requirements.txt), installed into .tools/ on the
# first run; after that the build works offline. Needs python3 with venv.
# To use a Zig you already have (0.17), set ZIG to its command: `ZIG=zig ./build.sh`.
set -euo pipefail
cd "$(dirname "$0")"
tools="$PWD/.tools"
if [[ -n "${ZIG:-}" ]]; then
  read -ra zig <<<"$ZIG"
else
  pin="$(sha256sum requirements.txt | cut -d' ' -f1)"
  if [[ ! -f "$tools/venv.stamp" || "$(cat "$tools/venv.stamp")" != "$pin" ]]; then
    echo "installing the pinned Zig into $tools" >&2
    rm -rf "$tools/venv"
    python3 -m venv "$tools/venv"
    "$tools/venv/bin/pip" install --quiet --disable-pip-version-check --no-input -r requirements.txt
    echo "$pin" >"$tools/venv.stamp"
  fi
  zig=("$tools/venv/bin/python" -m ziglang)
fi
export ZIG_GLOBAL_CACHE_DIR="$tools/zig-cache" ZIG_LOCAL_CACHE_DIR="$tools/zig-cache"
# `--stack`: Zig's default stack is 16 MiB, which every call would start with; 256 KiB is
# plenty unless the handler recurses deeply or keeps big arrays on the stack.
"${zig[@]}" build-exe \
  -target wasm32-wasi -O ReleaseSmall --stack 262144 --name __NAME__ \
  --dep hookwise -Mroot=main.zig -Mhookwise=sdk/hookwise.zig \
  -femit-bin=__NAME__.wasm
# Declares the input schema (hookwise check validates rules' with: against it).
if command -v hookwise >/dev/null; then
  hookwise plugins set-input-schema __NAME__.wasm input.schema.json
else
  echo "hookwise is not on PATH: the input schema was not added to __NAME__.wasm" >&2
fi
echo "built $PWD/__NAME__.wasm" >&2
