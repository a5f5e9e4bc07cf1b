#!/usr/bin/env bash
# Builds the Kubernetes binaries the tests and the real-node lab run
# (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
# kube-proxy, kubeadm, kubectl) from the Kubernetes source at a pinned
# version, through the Go module proxy, into a cache outside the repository.
# Only missing binaries are built; a later run with all present does nothing.
# The throwaway module it builds in is hack/lib/k8s-module.sh's.
#
# Prints the directory holding the binaries.
set -euo pipefail

# shellcheck source=lib/k8s-module.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/k8s-module.sh"

OUT=$K8S_CACHE_DIR/bin
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
k8s_module_init bmccm.local/k8sbuild

export GOFLAGS=-mod=mod CGO_ENABLED=0
mkdir -p "$OUT"
for b in "${BINARIES[@]}"; do
	[[ -x $OUT/$b ]] && continue
	pkg=k8s.io/kubernetes/cmd/$b
	echo "build-k8s: building $pkg@$K8S_VERSION" >&2
	go build -trimpath -ldflags="$K8S_LDFLAGS" -o "$OUT/$b.tmp" "$pkg"
	mv "$OUT/$b.tmp" "$OUT/$b"
done
echo "$OUT"
