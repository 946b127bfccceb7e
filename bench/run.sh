#!/usr/bin/env bash
# The headline benchmark in one command, from the repository root:
#   bench/run.sh            # runs everything and rewrites the `all` section of BENCHMARKS.md
#   bench/run.sh --rounds 3 # any other `hookwise-bench all` option is passed on
# Installs the load generator (wrk 4.1.0, Debian's package) when it is missing, builds the
# release binaries (hookwise and hookwise-bench), then runs `hookwise-bench all`.
set -euo pipefail
cd "$(dirname "$0")/.."

WRK_PACKAGE="wrk=4.1.0-3+b2"
if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bench/run.sh: installing $WRK_PACKAGE" >&2
    apt-get install -y "$WRK_PACKAGE" || { apt-get update && apt-get install -y "$WRK_PACKAGE"; }
  else
    echo "bench/run.sh: wrk is missing; install it (as root: apt-get install -y $WRK_PACKAGE)" >&2
    exit 1
  fi
fi

cargo build --release --locked -p hookwise -p hookwise-bench
target="${CARGO_TARGET_DIR:-target}"
exec "$target/release/hookwise-bench" all --write BENCHMARKS.md "$@"
