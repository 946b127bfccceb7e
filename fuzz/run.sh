#!/usr/bin/env bash
# Builds and runs every fuzz target for SECONDS each, growing fuzz/corpus/NAME/, then minimizes
# each corpus and prints what each run did. Usage: fuzz/run.sh SECONDS [TARGET...]
# Needs the nightly toolchain and cargo-fuzz (FUZZING.md says how to install them).
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:?usage: fuzz/run.sh SECONDS [TARGET...]}"
shift
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/hookwise-fuzz-target}"

# The engine embeds the first-party plugins, built for wasm32-wasip2. The nightly toolchain
# usually lacks that target, so build them once with the repository's pinned toolchain
# (rust-toolchain.toml) and hand them to the engine's build script.
plugins="$CARGO_TARGET_DIR/first-party"
(cd ../plugins/first-party && env -u RUSTUP_TOOLCHAIN CARGO_TARGET_DIR="$plugins" \
  cargo build --quiet --release --locked --target wasm32-wasip2)
export HOOKWISE_PREBUILT_PLUGINS="$plugins/wasm32-wasip2/release"

# -s none: the targets are safe Rust, so AddressSanitizer would find nothing the panics and
# assertions do not, and it slows every run; coverage instrumentation stays on.
./seed.sh
fuzz=(cargo +nightly fuzz)
opts=(--sanitizer none --release --debug-assertions)
if [ "$#" -gt 0 ]; then targets=("$@"); else mapfile -t targets < <("${fuzz[@]}" list); fi
"${fuzz[@]}" build "${opts[@]}"

summary=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  log="$CARGO_TARGET_DIR/fuzz-$t.log"
  # -timeout: an input that takes 10 s is a finding (a hang), not a slow machine.
  # -max_len: 64 KiB covers the largest seed; bodies are capped far below what a parser needs.
  status=0
  nice -n 10 "${fuzz[@]}" run "${opts[@]}" "$t" "corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -max_len=65536 -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  "${fuzz[@]}" cmin "${opts[@]}" "$t" "corpus/$t" >>"$log" 2>&1
  files=$(find "corpus/$t" -type f | wc -l)
  bytes=$(du -sb "corpus/$t" | cut -f1)
  result=ok
  [ "$status" -eq 0 ] || result="CRASH (exit $status; see $log and artifacts/$t/)"
  summary+=("$(printf '%-22s %6ss %12s execs %6s files %9s bytes  %s' \
    "$t" "$seconds" "$execs" "$files" "$bytes" "$result")")
done
printf '%s\n' "${summary[@]}"
