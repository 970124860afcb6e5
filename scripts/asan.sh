#!/usr/bin/env bash
# Runs the core's unit, property and stress tests under AddressSanitizer.
# Sanitizers are unstable Rust flags: RUSTC_BOOTSTRAP=1 lets the stable
# toolchain take them (its sanitizer runtimes ship with rust-std). Stress
# loops are scaled down. ThreadSanitizer is not run: without an instrumented
# std (-Zbuild-std, which needs the rust-src component) it reports libtest's
# own channel as a race and stops.
set -euo pipefail
cd "$(dirname "$0")/.."
# Stops with one line if this host's rust-std has no ASan runtime.
bash scripts/setup.sh asan
host=$(rustc -vV | sed -n 's/^host: //p')
RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zsanitizer=address" SLUICE_STRESS_DIVISOR=10 \
  cargo test -p sluice-core --target "$host" --target-dir target/asan --tests
