#!/usr/bin/env bash
# Builds the C example plugin into OUT_DIR/c.wasm.
#
#   plugins/examples/c/build.sh OUT_DIR
#
# The C compiler is Zig's (`zig cc`, with wasi-libc) from PyPI (`ziglang`, the version
# pinned in requirements.txt), installed into a venv under OUT_DIR/tools on first use;
# nothing is installed globally or into the source tree, and Zig's caches live under
# OUT_DIR/tools too. After the first run the script works offline. The module is rebuilt
# only when its sources, the SDK or the pinned version changed (a sha256 stamp next to the
# .wasm).
#
# Needs: python3 with venv, sha256sum, flock.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi

here="$(cd "$(dirname "$0")" && pwd)"
sdk="$(cd "$here/../../sdk/c" && pwd)"
mkdir -p "$1"
out="$(cd "$1" && pwd)"
tools="$out/tools"
mkdir -p "$tools"
# One build at a time per OUT_DIR (test processes may start together).
exec 9>"$tools/c.lock"
flock 9

venv="$tools/zig-venv"
stamp_tools="$tools/zig-venv.stamp"
tools_key="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [[ ! -f "$stamp_tools" || "$(cat "$stamp_tools")" != "$tools_key" ]]; then
  echo "c build.sh: pip install -r c/requirements.txt into $venv" >&2
  rm -rf "$venv" "$stamp_tools"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$here/requirements.txt"
  echo "$tools_key" >"$stamp_tools"
fi

key="$(
  {
    cat "$here/requirements.txt"
    (cd "$here" && sha256sum build.sh plugin.c)
    (cd "$sdk" && sha256sum hookwise.h hookwise.c)
  } | sha256sum | cut -d' ' -f1
)"
stamp="$out/c.wasm.stamp"
if [[ -f "$stamp" && -f "$out/c.wasm" && "$(cat "$stamp")" == "$key" ]]; then
  exit 0
fi
rm -f "$stamp"

echo "c build.sh: zig cc --target=wasm32-wasi -> $out/c.wasm" >&2
# The first build also compiles wasi-libc into the cache (about a minute); later ones take
# about a second. -s: no debug sections (1 MB -> tens of KB). A 1 MiB stack: zig cc
# reserves 16 MiB by default, and every call would start with 16 MiB of memory.
ZIG_GLOBAL_CACHE_DIR="$tools/zig-cache" ZIG_LOCAL_CACHE_DIR="$tools/zig-cache/local" \
  "$venv/bin/python" -m ziglang cc --target=wasm32-wasi -O2 -s -Wl,-z,stack-size=1048576 -Wall -Wextra \
  -I"$sdk" "$here/plugin.c" "$sdk/hookwise.c" -o "$out/c.wasm.tmp"
mv "$out/c.wasm.tmp" "$out/c.wasm"
echo "$key" >"$stamp"
