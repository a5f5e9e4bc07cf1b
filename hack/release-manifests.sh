#!/usr/bin/env bash
# Renders the release's install YAML: manifests/ with the image IMAGE
# (repository:tag, `make image`'s) and the label app.kubernetes.io/version,
# without the example
# cloud config and BGP passwords (the operator creates those; an upgrade that
# re-applies this file must not overwrite them). One file, as load-balancer
# projects publish per release:
#
#   kubectl apply --server-side -f baremetal-ccm-VERSION.yaml
#
# Usage: hack/release-manifests.sh VERSION IMAGE OUT
# kubectl (with its built-in kustomize) is $KUBECTL, else the one
# hack/build-k8s.sh provides.
set -euo pipefail
cd "$(dirname "$0")/.."

version=${1:?VERSION}
image=${2:?IMAGE}
out=${3:?OUT}
# repository and tag: the tag follows the last ':' after the last '/'.
repo=${image%:*}
tag=${image##*:}
if [[ $repo == "$image" || $tag == */* ]]; then
	echo "release-manifests: IMAGE=$image must be repository:tag" >&2
	exit 1
fi
if [[ ! $version =~ ^v[0-9]+\.[0-9]+\.[0-9]+ ]]; then
	echo "release-manifests: VERSION=$version must start with vMAJOR.MINOR.PATCH" >&2
	exit 1
fi
kubectl=${KUBECTL:-$(hack/build-k8s.sh)/kubectl}

# An overlay in a temporary directory, removed on every way out; kustomize
# takes the base by a relative path only.
overlay=$(mktemp -d)
trap 'rm -rf "$overlay"' EXIT
base=$(realpath --relative-to="$overlay" manifests)
cat >"$overlay/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- $base
labels:
- pairs:
    app.kubernetes.io/version: "$version"
  includeSelectors: false
  includeTemplates: true
images:
- name: ghcr.io/baremetal-ccm/baremetal-cloud-controller-manager
  newName: $repo
  newTag: "$tag"
patches:
- patch: |-
    \$patch: delete
    apiVersion: v1
    kind: ConfigMap
    metadata:
      name: baremetal-ccm-cloud-config
      namespace: kube-system
- patch: |-
    \$patch: delete
    apiVersion: v1
    kind: Secret
    metadata:
      name: baremetal-ccm-bgp-passwords
      namespace: kube-system
YAML

mkdir -p "$(dirname "$out")"
{
	echo "# baremetal-ccm $version: the cloud-controller-manager's install manifests,"
	echo "# image $image. Rendered by \`make release-manifests\` from manifests/."
	echo "#"
	echo "# Before applying, create the cloud config and (if your peers use TCP MD5)"
	echo "# the BGP passwords in kube-system (docs/install.md):"
	echo "#   kubectl -n kube-system create configmap baremetal-ccm-cloud-config --from-file=cloud.yaml"
	echo "#   kubectl -n kube-system create secret generic baremetal-ccm-bgp-passwords --from-file=tor-a"
	echo "# then: kubectl apply --server-side -f $(basename "$out")"
	"$kubectl" kustomize "$overlay"
} >"$out.tmp"
mv -f "$out.tmp" "$out"
echo "$out"
