# Sourced by the hack/build-*.sh scripts that build from the Kubernetes
# source at a pinned version (hack/build-k8s.sh, hack/build-e2e.sh).
#
# k8s.io/kubernetes is not meant to be required as a module: its go.mod
# replaces every staging module (k8s.io/api, k8s.io/client-go, ...) with a
# directory of its own tree. A throwaway module that requires it must replace
# each of those with the published k8s.io/X v0.<minor>.<patch> instead.

K8S_VERSION=${K8S_VERSION:-v1.37.2}
STAGING_VERSION=v0${K8S_VERSION#v1}
BMCCM_CACHE_DIR=${BMCCM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/baremetal-ccm}
K8S_CACHE_DIR=$BMCCM_CACHE_DIR/kubernetes-$K8S_VERSION
# The version the binaries report, as Kubernetes' own build stamps it.
K8S_LDFLAGS="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"

# k8s_gomod prints the path of k8s.io/kubernetes@$K8S_VERSION's go.mod in
# the module cache, downloading it through the module proxy if needed.
k8s_gomod() {
	local gomod
	gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^\s*"GoMod": "\(.*\)",$/\1/p')
	[[ -f $gomod ]] || { echo "k8s-module: no go.mod for k8s.io/kubernetes@$K8S_VERSION" >&2; return 1; }
	echo "$gomod"
}

# k8s_module_init writes, in the current directory (an empty temporary
# one), the go.mod of a throwaway module named $1 that requires
# k8s.io/kubernetes@$K8S_VERSION with its staging modules replaced by their
# published versions.
k8s_module_init() {
	local name=$1 gomod
	gomod=$(k8s_gomod) || return 1
	{
		echo "module $name"
		echo
		sed -n 's/^go \(.*\)$/go \1/p' "$gomod" | head -n 1
		echo
		echo "require k8s.io/kubernetes $K8S_VERSION"
		echo
		# "	k8s.io/api => ./staging/src/k8s.io/api" -> "replace k8s.io/api => k8s.io/api v0.37.2"
		sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/k8s.io/[a-z0-9-]*$#replace \1 => \1 '"$STAGING_VERSION"'#p' "$gomod"
	} >go.mod
	grep -q '^replace k8s.io/api ' go.mod || { echo "k8s-module: found no staging replacements in $gomod" >&2; return 1; }
}

# k8s_required_version prints the version of module $1 that
# k8s.io/kubernetes@$K8S_VERSION's go.mod requires.
k8s_required_version() {
	local gomod version
	gomod=$(k8s_gomod) || return 1
	version=$(awk -v m="$1" '$1 == m && $2 ~ /^v/ { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$gomod")
	[[ -n $version ]] || { echo "k8s-module: k8s.io/kubernetes@$K8S_VERSION does not require $1" >&2; return 1; }
	echo "$version"
}
