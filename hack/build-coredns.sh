#!/usr/bin/env bash
# Builds CoreDNS from its Go module, CGO off, at the version kubeadm v1.37.2
# installs as the cluster DNS addon (constants.CoreDNSVersion in
# cmd/kubeadm/app/constants: v1.14.6), into a cache outside the repository,
# for the real-node lab's coredns image (test/images). Only the conformance
# run needs it: the lab's own scenarios resolve no names.
#
# coredns.go at the module's root is the program, with the plugins of its
# plugin.cfg compiled in (core/plugin/zplugin.go is generated and shipped).
# go.mod has no replace directives, so a throwaway module that requires it
# resolves the versions CoreDNS's own go.mod names.
#
# Prints the directory holding the binary.
set -euo pipefail

COREDNS_VERSION=${COREDNS_VERSION:-v1.14.6}
CACHE=${BMCCM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/baremetal-ccm}
OUT=$CACHE/coredns-$COREDNS_VERSION/bin
MODULE=github.com/coredns/coredns

if [[ -x $OUT/coredns ]]; then
	echo "$OUT"
	exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

gomod=$(go mod download -json "$MODULE@$COREDNS_VERSION" | sed -n 's/^\s*"GoMod": "\(.*\)",$/\1/p')
[[ -f $gomod ]] || { echo "build-coredns: no go.mod for $MODULE@$COREDNS_VERSION" >&2; exit 1; }
{
	echo "module bmccm.local/corednsbuild"
	echo
	sed -n 's/^go \(.*\)$/go \1/p' "$gomod" | head -n 1
	echo
	echo "require $MODULE $COREDNS_VERSION"
} >go.mod

export GOFLAGS=-mod=mod CGO_ENABLED=0
mkdir -p "$OUT"
echo "build-coredns: building $MODULE@$COREDNS_VERSION" >&2
go build -trimpath -ldflags="-s -w" -o "$OUT/coredns.tmp" "$MODULE"
mv "$OUT/coredns.tmp" "$OUT/coredns"
echo "$OUT"
