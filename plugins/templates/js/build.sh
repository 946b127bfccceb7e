#!/usr/bin/env bash
# Builds __NAME__.wasm (a component for hookwise) with componentize-js, pinned in
# package-lock.json. The first build downloads it from npm; later builds work offline.
set -euo pipefail
cd "$(dirname "$0")"
if [[ ! -d node_modules/@bytecodealliance/componentize-js ]]; then
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
fi
node node_modules/@bytecodealliance/componentize-js/src/cli.js plugin.js \
  --wit wit --world-name plugin -o __NAME__.wasm
# Declares the input schema (hookwise check validates rules' with: against it).
if command -v hookwise >/dev/null; then
  hookwise plugins set-input-schema __NAME__.wasm input.schema.json
else
  echo "hookwise is not on PATH: the input schema was not added to __NAME__.wasm" >&2
fi
echo "built $(pwd)/__NAME__.wasm"
