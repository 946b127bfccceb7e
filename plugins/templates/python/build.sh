#!/usr/bin/env bash
# Builds __NAME__.wasm (a component for hookwise) with componentize-py, pinned in
# requirements.txt and installed into .venv. The first build downloads it from PyPI; later
# builds work offline.
set -euo pipefail
cd "$(dirname "$0")"
if [[ ! -x .venv/bin/componentize-py ]]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check --no-input -r requirements.txt
fi
.venv/bin/componentize-py -d wit -w plugin componentize app -o __NAME__.wasm
# Declares the input schema (hookwise check validates rules' with: against it).
if command -v hookwise >/dev/null; then
  hookwise plugins set-input-schema __NAME__.wasm input.schema.json
else
  echo "hookwise is not on PATH: the input schema was not added to __NAME__.wasm" >&2
fi
echo "built $(pwd)/__NAME__.wasm"
