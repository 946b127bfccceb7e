#!/usr/bin/env bash
# Builds __NAME__.wasm (a WASI command module) from plugin.c and the hookwise SDK (sdk/).
#
#   ./build.sh
#
# The C compiler is Zig's (`zig cc`, with wasi-libc) from PyPI (`ziglang`, pinned in
# requirements.txt), installed into .tools/ on the first run; after that the build works
# offline. The first build compiles wasi-libc into the cache (about a minute); later ones
# take about a second. Needs python3 with venv. To use a Zig you already have (0.17), set
# ZIG to its command: `ZIG=zig ./build.sh`.
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
# -s: no debug sections (about 1 MB without it). A 1 MiB stack instead of zig cc's 16 MiB,
# which every call would otherwise start with.
"${zig[@]}" cc --target=wasm32-wasi -O2 -s -Wl,-z,stack-size=1048576 -Wall -Wextra -Isdk plugin.c sdk/hookwise.c -o __NAME__.wasm
# Declares the input schema (hookwise check validates rules' with: against it).
if command -v hookwise >/dev/null; then
  hookwise plugins set-input-schema __NAME__.wasm input.schema.json
else
  echo "hookwise is not on PATH: the input schema was not added to __NAME__.wasm" >&2
fi
echo "built $PWD/__NAME__.wasm" >&2
