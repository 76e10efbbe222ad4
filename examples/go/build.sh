#!/bin/sh
# Builds the Go worker and producer into DIR (default: examples/go/bin), offline, in GOPATH
# mode against the Debian-packaged NATS client:
#   apt-get install golang-go golang-github-nats-io-go-nats-dev
# (Go >= 1.19; the package brings nats.go and its dependencies nkeys and nuid under
# /usr/share/gocode). No module proxy and no go.mod: GOPATH mode reads the sources there.
#
#   examples/go/build.sh [DIR]
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-"$here/bin"}
gopath=${NAQ_GOPATH:-/usr/share/gocode}

if ! command -v go >/dev/null 2>&1; then
  echo "build.sh: go not found; install it: apt-get install golang-go" >&2
  exit 1
fi
if [ ! -f "$gopath/src/github.com/nats-io/nats.go/nats.go" ] || [ ! -d "$gopath/src/github.com/nats-io/nuid" ]; then
  echo "build.sh: the NATS Go client (github.com/nats-io/nats.go, nuid) is not in $gopath/src;" >&2
  echo "          install it: apt-get install golang-github-nats-io-go-nats-dev (or set NAQ_GOPATH)" >&2
  exit 1
fi

mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$here"
for cmd in worker producer; do
  # GO111MODULE=off: GOPATH mode (imports from $gopath/src); GOFLAGS and GOPROXY cleared so
  # nothing in the environment sends it looking for modules online.
  GO111MODULE=off GOPATH="$gopath" GOFLAGS= GOPROXY=off \
    GOCACHE="${GOCACHE:-${TMPDIR:-/tmp}/naq-go-build-cache}" \
    go build -o "$out/$cmd" "./$cmd"
  echo "built $out/$cmd"
done
