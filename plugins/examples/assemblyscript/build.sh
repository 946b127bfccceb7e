#!/usr/bin/env bash
# Builds the AssemblyScript example plugin into OUT_DIR/assemblyscript.wasm.
#
#   plugins/examples/assemblyscript/build.sh OUT_DIR
#
# The compiler comes from the npm registry (`assemblyscript`, the version pinned in
# package-lock.json), installed with `npm ci` into OUT_DIR/tools on first use; nothing is
# installed globally or into the source tree. After the first run the script works offline.
# The module is rebuilt only when index.ts, the SDK, this script or the pinned versions
# changed (a sha256 stamp next to the .wasm).
#
# Needs: node + npm, sha256sum.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi

here="$(cd "$(dirname "$0")" && pwd)"
plugins="$(cd "$here/../.." && pwd)"
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

install_asc() {
  echo "assemblyscript/build.sh: npm ci (assemblyscript) into $tools/as" >&2
  rm -rf "$tools/as"
  mkdir -p "$tools/as"
  cp "$here/package.json" "$here/package-lock.json" "$tools/as/"
  # No install scripts are needed; refusing them keeps the install to the locked tarballs.
  (cd "$tools/as" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
}

build_as() {
  echo "assemblyscript/build.sh: asc index.ts -> $out/assemblyscript.wasm" >&2
  # From plugins/, so that the SDK's abort handler has the internal name used below.
  # `--use abort=...`: no `env.abort` import (hookwise provides only its own module); an
  # abort logs an error line naming the place, then traps. The incremental runtime frees garbage.
  (cd "$plugins" && node "$tools/as/node_modules/assemblyscript/bin/asc.js" \
    examples/assemblyscript/index.ts \
    -O3 --noAssert --runtime incremental \
    --use abort=sdk/assemblyscript/hookwise/hookwise_abort \
    --disableWarning 210 \
    -o "$out/assemblyscript.wasm.tmp")
  mv "$out/assemblyscript.wasm.tmp" "$out/assemblyscript.wasm"
}

unless_stamped "$tools/as.stamp" "$(cd "$here" && sha256sum package.json package-lock.json | sha256sum | cut -d' ' -f1)" \
  install_asc
unless_stamped "$out/assemblyscript.wasm.stamp" \
  "$(cd "$plugins" && sha256sum examples/assemblyscript/build.sh examples/assemblyscript/index.ts examples/assemblyscript/package-lock.json sdk/assemblyscript/hookwise.ts | sha256sum | cut -d' ' -f1)" \
  build_as
