#!/usr/bin/env bash
# Gets this machine ready for the README's quick-start commands, or stops at
# once with one line naming what to install. `npm test` runs it first (all
# checks), so that a missing tool fails in seconds, not after the Rust build;
# valgrind.sh and asan.sh run their own check, so each also works alone.
#
#   bash scripts/setup.sh [build] [lint] [valgrind] [asan] [package] [redis] [valkey] [postgres]   (none: all eight)
#
# Installs what it can: rustfmt and clippy through rustup, valgrind,
# redis-server, valkey-server and postgresql through apt-get when this is Debian/Ubuntu and we are root. Everything else (Node,
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
# their own redis-server on a free loopback port.
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

# Issue 16 promises "Redis or Valkey", so the Redis test files run a second
# time against valkey-server (npm run test:js:valkey; test/valkey-server.test.ts
# always). Debian 13 and Ubuntu 24.04 carry valkey in main, Debian 12
# (bookworm) only in bookworm-backports. redis-server stays installed beside it.
need_valkey() {
  command -v valkey-server >/dev/null && return
  if can_apt; then
    echo "setup: installing valkey-server (apt-get)" >&2
    apt-get update -qq >&2
    local target=()
    if ! apt-cache show valkey-server >/dev/null 2>&1; then
      [ "$(sed -n 's/^VERSION_CODENAME="\{0,1\}\([a-z]*\).*/\1/p' /etc/os-release 2>/dev/null)" = bookworm ] ||
        fail "apt-get has no valkey-server here: install Valkey 8 (https://valkey.io/download), then run this again"
      add_bookworm_backports
      target=(-t bookworm-backports)
    fi
    install_without_starting valkey-server "${target[@]}"
    command -v valkey-server >/dev/null || fail "apt-get installed valkey-server, but it is not on PATH"
    return
  fi
  fail "valkey-server is not installed: install it (Debian 13, Ubuntu 24.04+: sudo apt-get install valkey-server; Debian 12: from bookworm-backports; macOS: brew install valkey)"
}

# A deb822 source for bookworm-backports with the mirror and key that
# debian.sources gives bookworm itself (a mirror the machine already trusts),
# or Debian's own where that file has no bookworm entry. Backports get
# priority 100, so only what `-t bookworm-backports` asks for comes from there.
add_bookworm_backports() {
  local file=/etc/apt/sources.list.d/bookworm-backports.sources entry uri key
  entry=$(awk -v RS= '/(^|\n)Suites:([^\n]* )?bookworm( |\n|$)/ { print; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  uri=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' <<<"$entry")
  key=$(sed -n 's/^Signed-By: *\(\/[^ ]*\)$/\1/p' <<<"$entry")
  echo "setup: adding $file (${uri:=http://deb.debian.org/debian})" >&2
  printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: %s\n' \
    "$uri" "${key:-/usr/share/keyrings/debian-archive-keyring.gpg}" >"$file"
  apt-get update -qq >&2
}

# valkey-tools holds the binary; valkey-server adds its name and a service on
# port 6379 that the tests never use, whose start fails where a redis-server
# service holds that port (and under sysvinit fails the install with it). A
# policy-rc.d that answers 101 ("forbidden") is Debian's way to install
# without starting: made only where none is (containers have their own), and
# removed after, even when apt-get fails or we are interrupted.
install_without_starting() {
  local policy=/usr/sbin/policy-rc.d made=""
  if [ ! -e "$policy" ]; then
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    made=1
  fi
  local status=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 || status=$?
  if [ -n "$made" ]; then
    rm -f "$policy"
    trap - EXIT
  fi
  [ "$status" = 0 ] || fail "apt-get install $* failed ($status)"
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
[ ${#checks[@]} -gt 0 ] || checks=(build lint valgrind asan package redis valkey postgres)
for check in "${checks[@]}"; do
  case "$check" in
    build | lint | valgrind | asan | package | redis | valkey | postgres) "need_$check" ;;
    *) fail "unknown check $check (build, lint, valgrind, asan, package, redis, valkey, postgres)" ;;
  esac
done
