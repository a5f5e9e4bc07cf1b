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
# shellcheck source=lib/go-module-binary.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/go-module-binary.sh"
build_module_binary etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
