#!/usr/bin/env bash
# Builds the Kubernetes binaries the tests and the real-node lab run
# (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
# kube-proxy, kubeadm, kubectl) from the Kubernetes source at a pinned
# version, through the Go module proxy, into a cache outside the repository.
# Only missing binaries are built; a later run with all present does nothing.
#
# k8s.io/kubernetes is not meant to be required as a module: its go.mod
# replaces every staging module (k8s.io/api, k8s.io/client-go, ...) with a
# directory of its own tree. A throwaway module that requires it must replace
# each of those with the published k8s.io/X v0.<minor>.<patch> instead.
#
# Prints the directory holding the binaries.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
STAGING_VERSION=v0${K8S_VERSION#v1}
CACHE=${BMCCM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/baremetal-ccm}
OUT=$CACHE/kubernetes-$K8S_VERSION/bin
BINARIES=(kube-apiserver kubeadm kubectl kube-controller-manager kube-scheduler kubelet kube-proxy)

have_all() {
	for b in "${BINARIES[@]}"; do [[ -x $OUT/$b ]] || return 1; done
}
if have_all; then
	echo "$OUT"
	exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^\s*"GoMod": "\(.*\)",$/\1/p')
[[ -f $gomod ]] || { echo "build-k8s: no go.mod for k8s.io/kubernetes@$K8S_VERSION" >&2; exit 1; }

{
	echo "module bmccm.local/k8sbuild"
	echo
	sed -n 's/^go \(.*\)$/go \1/p' "$gomod" | head -n 1
	echo
	echo "require k8s.io/kubernetes $K8S_VERSION"
	echo
	# "	k8s.io/api => ./staging/src/k8s.io/api" -> "replace k8s.io/api => k8s.io/api v0.37.2"
	sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/k8s.io/[a-z0-9-]*$#replace \1 => \1 '"$STAGING_VERSION"'#p' "$gomod"
} >go.mod

grep -q '^replace k8s.io/api ' go.mod || { echo "build-k8s: found no staging replacements in $gomod" >&2; exit 1; }

export GOFLAGS=-mod=mod CGO_ENABLED=0
mkdir -p "$OUT"
for b in "${BINARIES[@]}"; do
	[[ -x $OUT/$b ]] && continue
	pkg=k8s.io/kubernetes/cmd/$b
	echo "build-k8s: building $pkg@$K8S_VERSION" >&2
	go build -trimpath -ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION" -o "$OUT/$b.tmp" "$pkg"
	mv "$OUT/$b.tmp" "$OUT/$b"
done
echo "$OUT"
