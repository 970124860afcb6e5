#!/usr/bin/env bash
# Packaging checked, not assumed: packs packages/node as npm would publish it
# and lints the tarball with publint (package.json fields, exports, files)
# and arethetypeswrong (every entry point's types resolve under node10,
# node16 CJS/ESM and bundler resolution), then lints the release workflow
# with actionlint (a Go module, built from the Go module proxy on first use;
# it runs shellcheck on the workflow's scripts when shellcheck is installed).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v go >/dev/null; then
  echo "go is not installed (needed for actionlint; https://go.dev/dl or Debian: apt-get install golang)" >&2
  exit 1
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
(cd packages/node && npm pack --silent --pack-destination "$out" >/dev/null)
tarball=$(ls "$out"/*.tgz)
npx publint --strict "$tarball"
npx attw --format table-flipped "$tarball"
go run github.com/rhysd/actionlint/cmd/actionlint@v1.7.12 .github/workflows/*.yml
echo "package checks: publint, arethetypeswrong and actionlint found nothing"
