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
# shellcheck source=lib/go-module-binary.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/go-module-binary.sh"
build_module_binary coredns github.com/coredns/coredns "$COREDNS_VERSION"
