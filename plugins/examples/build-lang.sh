#!/usr/bin/env bash
# Builds the JavaScript (componentize-js) and Python (componentize-py) example
# plugins into OUT_DIR as js.wasm and python.wasm.
#
#   plugins/examples/build-lang.sh OUT_DIR
#
# The tools come from the npm registry and PyPI at the versions pinned in
# js/package-lock.json and python/requirements.txt, installed into
# OUT_DIR/tools on first use (nothing is installed globally or into the
# source tree). After that the script works offline. A component is rebuilt
# only when its sources, the WIT contract or the pinned tool versions
# changed (a sha256 stamp next to each .wasm).
#
# Needs: node + npm, python3 with venv, sha256sum.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi

here="$(cd "$(dirname "$0")" && pwd)"
wit="$here/../wit"
mkdir -p "$1"
out="$(cd "$1" && pwd)"
tools="$out/tools"
mkdir -p "$tools"

# sha256 over the named files and every file under the WIT directory.
fingerprint() {
  {
    sha256sum "$@"
    find "$wit" -type f -name '*.wit' -print0 | sort -z | xargs -0 sha256sum
  } | sed "s|$here/||" | sha256sum | cut -d' ' -f1
}

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

# ---------- JavaScript ----------

install_js_tools() {
  echo "build-lang: npm ci (componentize-js) into $tools/js" >&2
  rm -rf "$tools/js"
  mkdir -p "$tools/js"
  cp "$here/js/package.json" "$here/js/package-lock.json" "$tools/js/"
  # No package in this tree has install scripts; refusing them keeps the
  # install from fetching anything beyond the locked registry tarballs.
  (cd "$tools/js" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
}

build_js() {
  echo "build-lang: componentize-js js/plugin.js -> $out/js.wasm" >&2
  # Its wizer keeps a compile cache (~20 MB) in the user's ~/.cache/wasmtime;
  # neither HOME nor XDG_CACHE_HOME moves it.
  node "$tools/js/node_modules/@bytecodealliance/componentize-js/src/cli.js" \
    "$here/js/plugin.js" --wit "$wit" --world-name plugin -o "$out/js.wasm.tmp"
  mv "$out/js.wasm.tmp" "$out/js.wasm"
}

unless_stamped "$tools/js.stamp" "$(cd "$here/js" && sha256sum package.json package-lock.json | sha256sum | cut -d' ' -f1)" \
  install_js_tools
unless_stamped "$out/js.wasm.stamp" "$(fingerprint "$here/js/plugin.js" "$here/js/package-lock.json")" \
  build_js

# ---------- Python ----------

install_py_tools() {
  echo "build-lang: pip install -r python/requirements.txt into $tools/venv" >&2
  rm -rf "$tools/venv"
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check --no-input \
    -r "$here/python/requirements.txt"
}

build_py() {
  echo "build-lang: componentize-py python/app.py -> $out/python.wasm" >&2
  # Run from a copy so that no __pycache__ lands in the source tree.
  rm -rf "$tools/py-src"
  mkdir -p "$tools/py-src"
  cp "$here/python/app.py" "$tools/py-src/"
  (cd "$tools/py-src" &&
    "$tools/venv/bin/componentize-py" -d "$wit" -w plugin componentize app -o "$out/python.wasm.tmp")
  mv "$out/python.wasm.tmp" "$out/python.wasm"
}

unless_stamped "$tools/venv.stamp" "$(sha256sum "$here/python/requirements.txt" | cut -d' ' -f1)" \
  install_py_tools
unless_stamped "$out/python.wasm.stamp" "$(fingerprint "$here/python/app.py" "$here/python/requirements.txt")" \
  build_py
