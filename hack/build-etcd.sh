#!/usr/bin/env bash
# Builds etcd from its Go module at a pinned version, CGO off, into a cache
# outside the repository, for the etcd image of the real-node lab.
#
# Why not Debian's etcd: kubeadm v1.37.2 writes an etcd static pod for
# etcd 3.7.0-0 (DefaultEtcdVersion in cmd/kubeadm/app/constants) that passes
# --feature-gates=InitialCorruptCheck=true, a flag Debian 12's etcd 3.4.23
# rejects. Debian's etcd stays the one every other test runs.
#
# The etcd binary's main package is the root of go.etcd.io/etcd/server/v3.
# That module's go.mod replaces its sibling modules (api, client, pkg) with
# directories of etcd's own tree, so `go install pkg@version` refuses it; a
# throwaway module requires it instead, and the published siblings at the
# versions it requires are used.
#
# Prints the directory holding the binary.
set -euo pipefail

ETCD_VERSION=${ETCD_VERSION:-v3.7.0}
CACHE=${BMCCM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/baremetal-ccm}
OUT=$CACHE/etcd-$ETCD_VERSION/bin
MODULE=go.etcd.io/etcd/server/v3

if [[ -x $OUT/etcd ]]; then
	echo "$OUT"
	exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

gomod=$(go mod download -json "$MODULE@$ETCD_VERSION" | sed -n 's/^\s*"GoMod": "\(.*\)",$/\1/p')
[[ -f $gomod ]] || { echo "build-etcd: no go.mod for $MODULE@$ETCD_VERSION" >&2; exit 1; }
{
	echo "module bmccm.local/etcdbuild"
	echo
	sed -n 's/^go \(.*\)$/go \1/p' "$gomod" | head -n 1
	echo
	echo "require $MODULE $ETCD_VERSION"
} >go.mod

export GOFLAGS=-mod=mod CGO_ENABLED=0
mkdir -p "$OUT"
echo "build-etcd: building $MODULE@$ETCD_VERSION" >&2
go build -trimpath -ldflags="-s -w" -o "$OUT/etcd.tmp" "$MODULE"
mv "$OUT/etcd.tmp" "$OUT/etcd"
echo "$OUT"
