#!/usr/bin/env bash
# Builds what running Kubernetes' end-to-end tests takes, from the
# Kubernetes source at the same pinned version as hack/build-k8s.sh, in the
# same throwaway module (hack/lib/k8s-module.sh), into the same cache,
# under e2e/:
#   e2e.test  the test binary of k8s.io/kubernetes/test/e2e (go test -c)
#   ginkgo    the ginkgo CLI, the version k8s.io/kubernetes requires
#   agnhost   the program of the agnhost test image the tests start
#             (k8s.io/kubernetes/test/images/agnhost, static; test/images
#             makes the image around it)
# Only missing outputs are built; a later run with all present does nothing.
#
# Prints the directory holding them.
set -euo pipefail

# shellcheck source=lib/k8s-module.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/k8s-module.sh"

OUT=$K8S_CACHE_DIR/e2e
OUTPUTS=(e2e.test ginkgo agnhost)

have_all() {
	for b in "${OUTPUTS[@]}"; do [[ -x $OUT/$b ]] || return 1; done
}
if have_all; then
	echo "$OUT"
	exit 0
fi

ginkgo_version=$(k8s_required_version github.com/onsi/ginkgo/v2)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
k8s_module_init bmccm.local/k8se2e

export GOFLAGS=-mod=mod CGO_ENABLED=0
mkdir -p "$OUT"
if [[ ! -x $OUT/ginkgo ]]; then
	# Pinned explicitly: the ginkgo CLI and the library e2e.test links must
	# agree, and a dependency the CLI alone needs could otherwise raise it.
	go get "github.com/onsi/ginkgo/v2@$ginkgo_version"
	echo "build-e2e: building github.com/onsi/ginkgo/v2/ginkgo@$ginkgo_version" >&2
	go build -trimpath -ldflags="-s -w" -o "$OUT/ginkgo.tmp" github.com/onsi/ginkgo/v2/ginkgo
	mv "$OUT/ginkgo.tmp" "$OUT/ginkgo"
fi
if [[ ! -x $OUT/agnhost ]]; then
	# The version agnhost reports (--version) is its image's tag, from the
	# VERSION file beside its source, as its Makefile stamps it.
	agnhost_dir=$(go list -m -f '{{.Dir}}' k8s.io/kubernetes)/test/images/agnhost
	agnhost_version=$(<"$agnhost_dir/VERSION")
	echo "build-e2e: building k8s.io/kubernetes/test/images/agnhost@$K8S_VERSION (agnhost $agnhost_version)" >&2
	go build -trimpath -ldflags="-s -w -X main.Version=$agnhost_version" -o "$OUT/agnhost.tmp" k8s.io/kubernetes/test/images/agnhost
	mv "$OUT/agnhost.tmp" "$OUT/agnhost"
fi
if [[ ! -x $OUT/e2e.test ]]; then
	echo "build-e2e: building k8s.io/kubernetes/test/e2e@$K8S_VERSION (go test -c)" >&2
	go test -c -trimpath -ldflags="$K8S_LDFLAGS" -o "$OUT/e2e.test.tmp" k8s.io/kubernetes/test/e2e
	mv "$OUT/e2e.test.tmp" "$OUT/e2e.test"
fi
echo "$OUT"
