#!/usr/bin/env bash
# Builds __NAME__.wasm from assembly/index.ts and the hookwise SDK (sdk/hookwise.ts).
#
#   ./build.sh
#
# The compiler comes from npm (`assemblyscript`, pinned in package-lock.json), installed with
# `npm ci` into node_modules/ on the first run; after that the build works offline. Needs node
# and npm. To use an `asc` you already have (0.28), set ASC to its command: `ASC=asc ./build.sh`.
set -euo pipefail
cd "$(dirname "$0")"
if [[ -n "${ASC:-}" ]]; then
  read -ra asc <<<"$ASC"
else
  pin="$(sha256sum package-lock.json | cut -d' ' -f1)"
  if [[ ! -f node_modules/.hookwise-stamp || "$(cat node_modules/.hookwise-stamp)" != "$pin" ]]; then
    echo "installing the pinned AssemblyScript into node_modules/" >&2
    npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2
    echo "$pin" >node_modules/.hookwise-stamp
  fi
  asc=(node node_modules/assemblyscript/bin/asc.js)
fi
# `--use abort=...`: hookwise provides no `env.abort`; the SDK's handler turns an abort (a
# failed assertion, `throw`, an index out of range) into an error log line naming the place,
# then a trap (the call fails for good).
"${asc[@]}" assembly/index.ts \
  -O3 --noAssert --runtime incremental \
  --use abort=sdk/hookwise/hookwise_abort \
  --disableWarning 210 \
  -o __NAME__.wasm
# Declares the input schema (hookwise check validates rules' with: against it).
if command -v hookwise >/dev/null; then
  hookwise plugins set-input-schema __NAME__.wasm input.schema.json
else
  echo "hookwise is not on PATH: the input schema was not added to __NAME__.wasm" >&2
fi
echo "built $PWD/__NAME__.wasm" >&2
