package main

import (
	"runtime/debug"

	"github.com/spf13/cobra"
	k8sversion "k8s.io/component-base/version"
)

// version is the binary's version, stamped at build time by the Makefile's
// build target:
//
//	-ldflags "-X main.version=v1.2.3 -X k8s.io/component-base/version.gitVersion=v1.2.3"
//
// The second stamp makes the apiserver-style /version endpoint, the build
// info metric and `--version=raw` say the same. It must start with
// vMAJOR.MINOR.PATCH: component-base parses it.
var version string

// binaryVersion returns the stamped version; without a stamp, the module
// version the Go toolchain recorded (a pseudo-version from the VCS, for
// `go build` in a clone or `go install`), or v0.0.0-dev.
func binaryVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "v0.0.0-dev"
}

// alignKubernetesVersion makes component-base report our version when the
// build did not stamp its own. It accepts only a version with the same
// major.minor.patch as its default (v0.0.0), which an unstamped build's is;
// a mismatch is left as it is rather than faked.
func alignKubernetesVersion() {
	v := binaryVersion()
	if k8sversion.Get().GitVersion != v {
		_ = k8sversion.SetDynamicVersion(v)
	}
}

// versionRequested tells whether --version asks to print the version and
// quit: --version or --version=raw. (--version=vX.Y.Z only sets the
// reported version and runs.)
func versionRequested(cmd *cobra.Command) (bool, string) {
	f := cmd.Flags().Lookup("version")
	if f == nil {
		return false, ""
	}
	switch v := f.Value.String(); v {
	case "true", "raw":
		return true, v
	}
	return false, ""
}
