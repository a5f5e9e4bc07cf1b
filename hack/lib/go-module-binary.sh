# Sourced by the hack/build-*.sh scripts that build one program from a
# published Go module at a pinned version (hack/build-etcd.sh,
# hack/build-coredns.sh).

# build_module_binary NAME MODULE VERSION builds the main package at
# MODULE@VERSION's root, CGO off, into
# $BMCCM_CACHE/NAME-VERSION/bin/NAME (the cache outside the repository),
# unless it is there already, and prints that directory.
#
# A throwaway module requires MODULE, so that the versions MODULE's own
# go.mod requires are used (and its replace directives, which `go install
# pkg@version` refuses, are ignored: the published modules serve instead).
build_module_binary() (
	set -euo pipefail
	local name=$1 module=$2 version=$3
	local cache=${BMCCM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/baremetal-ccm}
	local out=$cache/$name-$version/bin
	if [[ -x $out/$name ]]; then
		echo "$out"
		return 0
	fi
	local work gomod
	work=$(mktemp -d)
	# The function runs in a subshell: this trap is its own.
	trap 'rm -rf "$work"' EXIT
	gomod=$(cd "$work" && go mod download -json "$module@$version" | sed -n 's/^\s*"GoMod": "\(.*\)",$/\1/p')
	[[ -f $gomod ]] || { echo "build-$name: no go.mod for $module@$version" >&2; return 1; }
	{
		echo "module bmccm.local/${name}build"
		echo
		sed -n 's/^go \(.*\)$/go \1/p' "$gomod" | head -n 1
		echo
		echo "require $module $version"
	} >"$work/go.mod"
	mkdir -p "$out"
	echo "build-$name: building $module@$version" >&2
	(cd "$work" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$out/$name.tmp" "$module")
	mv "$out/$name.tmp" "$out/$name"
	echo "$out"
)
