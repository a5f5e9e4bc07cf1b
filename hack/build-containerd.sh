#!/usr/bin/env bash
# Builds containerd v2 (containerd, ctr, containerd-shim-runc-v2) from its Go
# module at a pinned version, CGO off, into a cache outside the repository.
# The real-node lab runs one containerd per node; Debian's containerd (1.6)
# is too old for the kubelets to come (they need containerd 2's CRI
# RuntimeConfig call). runc and the CNI plugins are Debian's (.ci/run).
# Only missing binaries are built; a later run with all present does nothing.
#
# Prints the directory holding the binaries.
set -euo pipefail

CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.2.9}
CACHE=${BMCCM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/baremetal-ccm}
OUT=$CACHE/containerd-$CONTAINERD_VERSION/bin
MODULE=github.com/containerd/containerd/v2
BINARIES=(containerd ctr containerd-shim-runc-v2)

have_all() {
	for b in "${BINARIES[@]}"; do [[ -x $OUT/$b ]] || return 1; done
}
if have_all; then
	echo "$OUT"
	exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# `go install pkg@version` builds the module with its own go.mod (it has no
# replace directives); outside any module, so this repository's go.mod
# plays no part.
cd "$work"

# The tags containerd's own Makefile uses for a static build; the shim is
# built without gRPC as upstream does (it serves ttrpc only).
tags="urfave_cli_no_docs osusergo netgo static_build"
ldflags="-s -w -X $MODULE/version.Version=${CONTAINERD_VERSION#v} -X $MODULE/version.Package=$MODULE"
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOBIN=$work/bin
mkdir -p "$OUT"
for b in "${BINARIES[@]}"; do
	[[ -x $OUT/$b ]] && continue
	t=$tags
	[[ $b == containerd-shim-runc-v2 ]] && t="$tags no_grpc"
	echo "build-containerd: building $MODULE/cmd/$b@$CONTAINERD_VERSION" >&2
	go install -trimpath -tags "$t" -ldflags="$ldflags" "$MODULE/cmd/$b@$CONTAINERD_VERSION"
	mv "$GOBIN/$b" "$OUT/$b.tmp"
	mv "$OUT/$b.tmp" "$OUT/$b"
done
echo "$OUT"
