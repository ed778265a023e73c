#!/usr/bin/env bash
# Prints the path of the Temporal CLI whose dev server the tests of
# examples/temporal start, building it first when it is missing.
#
# The CLI is built from the Go module proxy, outside the repository, into
# $(go env GOPATH)/bin/temporal, and only when no file is there: the build
# takes about 10 minutes on 2 cores, downloads 283 MB of modules, needs
# 1.9 GB of memory at link time and makes a 252 MB binary. v1.5.1 is the
# newest release that builds from the proxy: v1.9.1's nested module cliext
# is not served there.
#
# TEMPORAL_CLI, when set, names the binary instead of $(go env GOPATH)/bin/temporal.
set -euo pipefail

version=v1.5.1
gopath=$(go env GOPATH)
gopath=${gopath%%:*} # the first entry, where go install puts binaries
bin=${TEMPORAL_CLI:-$gopath/bin/temporal}

if [ ! -x "$bin" ]; then
  echo "building the Temporal CLI $version into $bin (about 10 minutes)..." >&2
  mkdir -p "$(dirname "$bin")"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  # Outside any module, so that no go.mod or GOFLAGS of the caller's applies.
  (cd "$tmp" && GOBIN="$tmp" GOFLAGS= go install "github.com/temporalio/cli/cmd/temporal@$version")
  # Copied next to its place, then renamed: never a partial binary at $bin.
  cp "$tmp/temporal" "$bin.partial"
  mv "$bin.partial" "$bin"
  echo "built $bin" >&2
fi
echo "$bin"
