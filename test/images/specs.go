package images

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/baremetal-ccm/baremetal-ccm/internal/ccmimage"
	"github.com/baremetal-ccm/baremetal-ccm/internal/ociimage"
)

// labImage is one image to build.
type labImage struct {
	ref  string
	spec ociimage.Spec
}

// controlPlaneBinaries are the Kubernetes images, each its binary at
// /usr/local/bin/<name>: kubeadm's static pods run "kube-apiserver", ...
// by name (PATH), its kube-proxy DaemonSet runs /usr/local/bin/kube-proxy.
var controlPlaneBinaries = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"}

// iptablesNames are the commands kube-proxy's iptables mode runs, each
// Debian's xtables-nft-multi under another name (it acts by argv[0]).
var iptablesNames = []string{"iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore"}

// xtablesMulti is Debian's iptables (package iptables, nf_tables backend).
const xtablesMulti = "/usr/sbin/xtables-nft-multi"

func labImages(ctx context.Context, o Options) ([]labImage, error) {
	var images []labImage
	for _, name := range controlPlaneBinaries {
		s, err := binaryImage(filepath.Join(o.K8sBinDir, name), "/usr/local/bin/"+name)
		if err != nil {
			return nil, err
		}
		if name == "kube-proxy" {
			if err := addIptables(ctx, &s); err != nil {
				return nil, err
			}
		}
		images = append(images, labImage{o.Reference(name, KubernetesVersion), s})
	}

	etcd, err := binaryImage(filepath.Join(o.EtcdBinDir, "etcd"), "/usr/local/bin/etcd")
	if err != nil {
		return nil, err
	}
	images = append(images, labImage{o.Reference("etcd", EtcdTag), etcd})

	pauseBin, err := goBuild(ctx, o.Dir, "pause")
	if err != nil {
		return nil, err
	}
	// Only the program: the sandbox runs nothing else. 65535 is the user
	// the upstream pause image runs as.
	pause := ociimage.Spec{
		Files:  []ociimage.File{{Path: "/pause", Source: pauseBin, Mode: 0o755}},
		Config: ociimage.Config{Entrypoint: []string{"/pause"}, User: "65535:65535"},
	}
	images = append(images, labImage{o.PauseImage(), pause})

	netserverBin, err := goBuild(ctx, o.Dir, "netserver")
	if err != nil {
		return nil, err
	}
	netserver, err := binaryImage(netserverBin, "/netserver")
	if err != nil {
		return nil, err
	}
	netserver.Config.User = fmt.Sprintf("%d:%d", ociimage.NonrootUID, ociimage.NonrootUID)
	images = append(images, labImage{o.NetserverImage(), netserver})

	for _, tag := range o.CCMTags {
		if _, err := ociimage.ParseReference(CCMImage(tag)); err != nil {
			return nil, err
		}
		s, err := ccmimage.Spec(o.CCMBinary, tag)
		if err != nil {
			return nil, err
		}
		images = append(images, labImage{CCMImage(tag), s})
	}

	if o.AgnhostBinary != "" {
		s, err := agnhostSpec(ctx, o.AgnhostBinary)
		if err != nil {
			return nil, err
		}
		images = append(images, labImage{o.AgnhostImage(), s})
	}
	if o.CoreDNSBinary != "" {
		s, err := coreDNSSpec(o.CoreDNSBinary)
		if err != nil {
			return nil, err
		}
		images = append(images, labImage{o.CoreDNSImage(), s})
	}
	return images, nil
}

// binaryImage is a static binary at path in the image, its entrypoint, on
// the static base (CA certificates, /etc/passwd, /tmp).
func binaryImage(binary, path string) (ociimage.Spec, error) {
	dynamic, err := ociimage.DynamicallyLinked(binary)
	if err != nil {
		return ociimage.Spec{}, err
	}
	if dynamic {
		return ociimage.Spec{}, fmt.Errorf("%s is dynamically linked: the lab's images hold no libc for it (build it with CGO_ENABLED=0)", binary)
	}
	var s ociimage.Spec
	if err := s.AddStaticBase(); err != nil {
		return ociimage.Spec{}, err
	}
	s.Files = append(s.Files, ociimage.File{Path: path, Source: binary, Mode: 0o755})
	s.Config = ociimage.Config{Entrypoint: []string{path}, Env: []string{ociimage.StaticPath}}
	return s, nil
}

// addIptables adds Debian's iptables to kube-proxy's image: the program
// with its libraries, its names, and the extensions it loads at run time
// (libxt_*.so, libipt_*.so, with their own libraries).
func addIptables(ctx context.Context, s *ociimage.Spec) error {
	if _, err := os.Stat(xtablesMulti); err != nil {
		return fmt.Errorf("kube-proxy's image needs Debian's iptables (apt-get install iptables): %w", err)
	}
	if err := s.AddHostBinary(ctx, xtablesMulti, ""); err != nil {
		return err
	}
	for _, name := range iptablesNames {
		s.Symlinks = append(s.Symlinks, ociimage.Symlink{Path: "/usr/sbin/" + name, Target: filepath.Base(xtablesMulti)})
	}
	dirs, err := filepath.Glob("/usr/lib/*/xtables")
	if err != nil {
		return err
	}
	if len(dirs) != 1 {
		return fmt.Errorf("kube-proxy's image: want one xtables extension directory /usr/lib/*/xtables, found %q", dirs)
	}
	return s.AddHostTree(ctx, dirs[0])
}

// goBuild builds the lab program test/agent/cmd/<name> static into dir
// and returns its path.
func goBuild(ctx context.Context, dir, name string) (string, error) {
	out := filepath.Join(dir, name)
	pkg := "github.com/baremetal-ccm/baremetal-ccm/test/agent/cmd/" + name
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s (run from inside the repository): %w\n%s", pkg, err, msg)
	}
	return out, nil
}

// checkVersions checks that the binaries are the versions the images are
// named by: kubeadm would otherwise run what its manifests do not expect.
func checkVersions(ctx context.Context, o Options) error {
	for _, name := range controlPlaneBinaries {
		if err := checkVersion(ctx, filepath.Join(o.K8sBinDir, name), "Kubernetes "+KubernetesVersion); err != nil {
			return err
		}
	}
	if o.AgnhostBinary != "" {
		// cobra's --version of agnhost's root command, named "app".
		if err := checkVersion(ctx, o.AgnhostBinary, "app version "+AgnhostTag); err != nil {
			return err
		}
	}
	if o.CoreDNSBinary != "" {
		if err := checkVersion(ctx, o.CoreDNSBinary, coreDNSVersionLine); err != nil {
			return err
		}
	}
	return checkVersion(ctx, filepath.Join(o.EtcdBinDir, "etcd"), "etcd Version: "+EtcdVersion)
}

func checkVersion(ctx context.Context, binary, want string) error {
	out, err := exec.CommandContext(ctx, binary, "--version").Output()
	if err != nil {
		return fmt.Errorf("images: %s --version: %w", binary, err)
	}
	if first, _, _ := strings.Cut(string(out), "\n"); strings.TrimSpace(first) != want {
		return fmt.Errorf("images: %s --version says %q, want %q", binary, strings.TrimSpace(first), want)
	}
	return nil
}
