#!/usr/bin/env bash
# What the test suite needs beyond the pinned toolchain and the databases, installed if missing
# (run it as often as you like):
# - the WebAssembly targets: the engine embeds built-in plugins built for wasm32-wasip2, and the
#   tests build example plugins for both. rustup adds a toolchain file's targets only when it
#   installs the toolchain, so a machine that already had the toolchain lacks them.
# - Debian's chromium, pinned: the dashboard's browser test drives it over the DevTools protocol.
set -euo pipefail

rustup target add wasm32-wasip2 wasm32-wasip1

CHROMIUM_VERSION="156.0.8078.129-1~deb12u1"
# The status too: a removed package whose config files remain still reports its version.
installed="$(dpkg-query -W -f='${Status} ${Version}' chromium 2>/dev/null || true)"
if [ "$installed" != "install ok installed $CHROMIUM_VERSION" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "scripts/test-setup.sh: the tests need chromium $CHROMIUM_VERSION; as root run:" >&2
    echo "  apt-get install -y chromium=$CHROMIUM_VERSION" >&2
    exit 1
  fi
  apt-get install -y "chromium=$CHROMIUM_VERSION" \
    || { apt-get update && apt-get install -y "chromium=$CHROMIUM_VERSION"; }
fi
chromium --version
