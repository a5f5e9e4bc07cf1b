package images

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"

	"github.com/baremetal-ccm/baremetal-ccm/internal/ociimage"
)

// AgnhostTag is the tag the e2e framework of Kubernetes v1.37.2 names
// agnhost by (test/utils/image/manifest.go: configs[Agnhost]), and the
// version its source's VERSION file gives the program.
const AgnhostTag = "2.66.1"

// agnhostTool is a host program the agnhost image carries: the e2e tests
// run shell commands in agnhost pods (`kubectl exec ... /bin/sh -c`).
type agnhostTool struct {
	// host is the program looked up in the host's PATH (Debian's).
	host string
	// name is its name in the image's /usr/bin.
	name string
}

// agnhostTools are the commands the e2e tests run inside agnhost pods. The
// upstream image is Alpine with busybox, curl, netcat-openbsd, iproute2;
// here they are Debian's programs with their libraries, and netcat is the
// same OpenBSD netcat, as the tests rely on its flags
// (`echo hostName | nc -v -t -w 2 HOST PORT`, `nc -u`).
var agnhostTools = []agnhostTool{
	{host: "dash", name: "sh"},
	{host: "curl", name: "curl"},
	{host: "wget", name: "wget"},
	{host: "nc.openbsd", name: "nc"},
	{host: "grep", name: "grep"},
	{host: "sed", name: "sed"},
	{host: "ip", name: "ip"},
	{host: "ss", name: "ss"},
}

// agnhostCoreutils are the usual commands a shell line pipes through or
// sleeps with, Debian's coreutils under their own names, as busybox gives
// them in upstream's image.
var agnhostCoreutils = []string{
	"cat", "cut", "date", "dd", "echo", "env", "head", "hostname", "ls",
	"mkdir", "rm", "sleep", "tail", "timeout", "touch", "tr", "wc",
}

// hostSearchPath is where agnhostTools are looked up: Debian's, whatever
// PATH the caller runs with.
const hostSearchPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// agnhostSpec is the agnhost image around the static program binary, as
// test/images/agnhost/Dockerfile of Kubernetes makes it where the tests
// need it: /agnhost as the entrypoint with "pause" as its default
// argument, running as root; /agnhost-2 linking to it (entrypoint tests);
// /uploads (netexec's upload handler writes there); a shell and the
// network tools of agnhostTools in /usr/bin with /bin linking to it
// (`/bin/sh -c`) with agnhostCoreutils. Left out, as no LoadBalancer test uses them: the
// fake registry's content, porter's TLS key pair, coredns, iperf, dig.
func agnhostSpec(ctx context.Context, binary string) (ociimage.Spec, error) {
	s, err := binaryImage(binary, "/agnhost")
	if err != nil {
		return ociimage.Spec{}, err
	}
	s.Config.Cmd = []string{"pause"}
	s.Symlinks = append(s.Symlinks,
		ociimage.Symlink{Path: "/agnhost-2", Target: "agnhost"},
		ociimage.Symlink{Path: "/bin", Target: "usr/bin"},
	)
	s.Dirs = append(s.Dirs, ociimage.Dir{Path: "/uploads"})
	tools := slices.Clone(agnhostTools)
	for _, name := range agnhostCoreutils {
		tools = append(tools, agnhostTool{host: name, name: name})
	}
	for _, tool := range tools {
		path, err := lookHostTool(tool.host)
		if err != nil {
			return ociimage.Spec{}, err
		}
		if err := s.AddHostBinary(ctx, path, "/usr/bin/"+tool.name); err != nil {
			return ociimage.Spec{}, fmt.Errorf("agnhost image: %s: %w", tool.host, err)
		}
	}
	return s, nil
}

// lookHostTool finds the host program name in hostSearchPath, through
// Debian's alternatives links to the program itself.
func lookHostTool(name string) (string, error) {
	for _, dir := range filepath.SplitList(hostSearchPath) {
		p := filepath.Join(dir, name)
		if _, err := exec.LookPath(p); err != nil {
			continue
		}
		return filepath.EvalSymlinks(p)
	}
	return "", fmt.Errorf("agnhost image: %s is not installed (Debian's dash, curl, wget, netcat-openbsd, grep, coreutils, iproute2): %w", name, exec.ErrNotFound)
}
