#!/usr/bin/env bash
# Runs the core's test binaries (unit, property, stress; not loom) under
# valgrind memcheck: any invalid access, use of uninitialised memory, or
# definite leak fails. Stress loops and proptest cases are scaled down
# (valgrind runs threads one at a time, ~50x slower).
set -euo pipefail
cd "$(dirname "$0")/.."
# Installs valgrind (Debian, as root) or stops with one line saying what to install.
bash scripts/setup.sh valgrind
binaries=$(cargo test -p sluice-core --no-run --message-format=json 2>/dev/null |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{for(const l of s.split("\n")){if(!l)continue;const m=JSON.parse(l);if(m.reason==="compiler-artifact"&&m.executable&&m.profile.test&&!m.target.name.startsWith("loom_"))console.log(m.executable)}})')
export SLUICE_STRESS_DIVISOR=50 PROPTEST_CASES=32
for binary in $binaries; do
  echo "valgrind memcheck: $(basename "$binary")"
  valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
    --show-leak-kinds=definite "$binary" --test-threads=1 -q
done
echo "valgrind memcheck: no errors in $(echo "$binaries" | wc -w) test binaries"
