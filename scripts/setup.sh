#!/usr/bin/env bash
# Gets this machine ready for the README's quick-start commands, or stops at
# once with one line naming what to install. `npm test` runs it first (all
# checks), so that a missing tool fails in seconds, not after the Rust build;
# valgrind.sh and asan.sh run their own check, so each also works alone.
#
#   bash scripts/setup.sh [build] [lint] [valgrind] [asan] [package] [redis] [postgres]   (none: all seven)
#
# Installs what it can: rustfmt and clippy through rustup, valgrind,
# redis-server and postgresql through apt-get when this is Debian/Ubuntu and we are root. Everything else (Node,
# npm, Rust) is the reader's, as the README says.
set -euo pipefail

fail() {
  echo "setup: $*" >&2
  exit 1
}

can_apt() {
  command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]
}

need_build() {
  command -v cargo >/dev/null && command -v rustc >/dev/null ||
    fail "Rust is not installed: install it with rustup (https://rustup.rs), then run this again"
  command -v cc >/dev/null ||
    fail "no C linker (cc): install a C toolchain (Debian: apt-get install build-essential)"
}

need_lint() {
  need_build
  if cargo fmt --version >/dev/null 2>&1 && cargo clippy --version >/dev/null 2>&1; then return; fi
  command -v rustup >/dev/null ||
    fail "cargo fmt and cargo clippy are missing: install the rustfmt and clippy components of your Rust"
  rustup component add rustfmt clippy >&2
}

need_valgrind() {
  command -v valgrind >/dev/null && return
  if can_apt; then
    echo "setup: installing valgrind (apt-get)" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends valgrind >&2
    command -v valgrind >/dev/null || fail "apt-get installed valgrind, but it is not on PATH"
    return
  fi
  fail "valgrind is not installed: install it (Debian: sudo apt-get install valgrind; macOS has none: skip npm run test:valgrind)"
}

# The Redis tests (test/redis-*.test.ts) and the bench's redis group start
# their own redis-server (Valkey's works too) on a free loopback port.
need_redis() {
  command -v redis-server >/dev/null && return
  if can_apt; then
    echo "setup: installing redis-server (apt-get)" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >&2
    command -v redis-server >/dev/null || fail "apt-get installed redis-server, but it is not on PATH"
    return
  fi
  fail "redis-server is not installed: install it (Debian: sudo apt-get install redis-server; macOS: brew install redis)"
}

# The reference service's test (test/service.test.ts) and bench start a
# throwaway PostgreSQL cluster (examples/service/postgres.mjs) with initdb and
# pg_ctl, from Debian's /usr/lib/postgresql/<version>/bin or PATH.
need_postgres() {
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && return
  command -v initdb >/dev/null && command -v pg_ctl >/dev/null && return
  if can_apt; then
    echo "setup: installing postgresql (apt-get)" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || fail "apt-get installed postgresql, but no /usr/lib/postgresql/*/bin/initdb"
    return
  fi
  fail "PostgreSQL is not installed (npm run bench:service starts one): install it (Debian: sudo apt-get install postgresql; macOS: brew install postgresql)"
}

# AddressSanitizer runs on the stable toolchain (asan.sh sets
# RUSTC_BOOTSTRAP=1 for the unstable -Zsanitizer flag); it needs the ASan
# runtime that rust-std ships for the host, which exists for x86_64/aarch64
# Linux and macOS only. No nightly, no extra component.
need_asan() {
  need_build
  local libdir
  libdir=$(rustc --print target-libdir)
  compgen -G "$libdir/librustc-*_rt.asan.*" >/dev/null ||
    fail "$(rustc -vV | sed -n 's/^host: //p') has no AddressSanitizer runtime in $libdir: ASan needs x86_64/aarch64 Linux or macOS"
}

# The package checks (scripts/check-package.sh) build actionlint from the Go
# module proxy, which needs Go 1.25 or later (actionlint 1.7.12's go.mod);
# Go fetches a newer toolchain itself when GOTOOLCHAIN allows it.
need_package() {
  command -v go >/dev/null ||
    fail "Go is not installed (npm run test:package builds actionlint with it): install Go 1.25+ (https://go.dev/dl)"
}

checks=("$@")
[ ${#checks[@]} -gt 0 ] || checks=(build lint valgrind asan package redis postgres)
for check in "${checks[@]}"; do
  case "$check" in
    build | lint | valgrind | asan | package | redis | postgres) "need_$check" ;;
    *) fail "unknown check $check (build, lint, valgrind, asan, package, redis, postgres)" ;;
  esac
done
