package images

import (
	"archive/tar"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/baremetal-ccm/baremetal-ccm/test/controlplane"
	"github.com/baremetal-ccm/baremetal-ccm/test/fabric"
)

// labOptions gathers what BuildLab needs on this machine; a missing part
// fails the test under CI=true and skips it elsewhere.
func labOptions(t *testing.T, ctx context.Context) Options {
	t.Helper()
	k8s, err := controlplane.BinDir(ctx)
	if err != nil {
		controlplane.Unavailable(t, "the Kubernetes binaries: "+err.Error())
	}
	etcd, err := EtcdBinDir(ctx)
	if err != nil {
		controlplane.Unavailable(t, "etcd v"+EtcdVersion+": "+err.Error())
	}
	if _, err := os.Stat(xtablesMulti); err != nil {
		controlplane.Unavailable(t, "Debian's iptables is not installed (see .ci/run)")
	}
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	// The CCM as `make build` builds it: static.
	ccm := filepath.Join(t.TempDir(), "baremetal-cloud-controller-manager")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", ccm, "./cmd/baremetal-cloud-controller-manager")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the CCM: %v\n%s", err, out)
	}
	return Options{
		Dir:        t.TempDir(),
		K8sBinDir:  k8s,
		EtcdBinDir: etcd,
		CCMBinary:  ccm,
		CCMTags:    []string{"lab-1", "lab-2"},
	}
}

// TestLabImages builds every lab image once, then checks them: named as
// kubeadm and manifests/ expect, reused by a second BuildLab, imported by
// a real containerd v2, and kube-proxy's iptables working from its image.
func TestLabImages(t *testing.T) {
	controlplane.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	containerdBin, err := ContainerdBinDir(ctx)
	if err != nil {
		controlplane.Unavailable(t, "containerd: "+err.Error())
	}
	o := labOptions(t, ctx)

	start := time.Now()
	archives, err := BuildLab(ctx, o)
	if err != nil {
		t.Fatalf("BuildLab: %v", err)
	}
	t.Logf("BuildLab into an empty directory: %v", time.Since(start).Round(time.Millisecond))

	repo := DefaultRepository
	wantRefs := []string{
		repo + "/kube-apiserver:v1.37.2",
		repo + "/kube-controller-manager:v1.37.2",
		repo + "/kube-scheduler:v1.37.2",
		repo + "/kube-proxy:v1.37.2",
		repo + "/etcd:3.7.0-0",
		repo + "/pause:3.10.2",
		repo + "/netserver:lab",
		"ghcr.io/baremetal-ccm/baremetal-cloud-controller-manager:lab-1",
		"ghcr.io/baremetal-ccm/baremetal-cloud-controller-manager:lab-2",
	}
	var gotRefs []string
	for _, a := range archives {
		gotRefs = append(gotRefs, a.Ref)
		if filepath.Dir(a.Path) != o.Dir {
			t.Errorf("archive %s is not in Options.Dir %s", a.Path, o.Dir)
		}
	}
	if diff := cmp.Diff(wantRefs, gotRefs); diff != "" {
		t.Fatalf("BuildLab references (-want +got):\n%s", diff)
	}

	t.Run("Reused", func(t *testing.T) { testReused(t, ctx, o, archives) })
	t.Run("ImportedByContainerd", func(t *testing.T) { testImported(t, ctx, containerdBin, archives, wantRefs) })
	t.Run("KubeProxyRunsIptables", func(t *testing.T) { testKubeProxyIptables(t, ctx, archives) })
}

// testReused runs BuildLab again: nothing changed, so every archive is
// reused as it is.
func testReused(t *testing.T, ctx context.Context, o Options, archives []Archive) {
	before := fileStates(t, archives)
	start := time.Now()
	again, err := BuildLab(ctx, o)
	if err != nil {
		t.Fatalf("BuildLab again: %v", err)
	}
	t.Logf("BuildLab with every archive reused: %v", time.Since(start).Round(time.Millisecond))
	if diff := cmp.Diff(archives, again); diff != "" {
		t.Errorf("BuildLab again returned other archives (-first +second):\n%s", diff)
	}
	if diff := cmp.Diff(before, fileStates(t, again)); diff != "" {
		t.Errorf("BuildLab again rewrote archives (-before +after):\n%s", diff)
	}
}

// testImported imports every archive into a real containerd v2
// (hack/build-containerd.sh) in the kubelet's namespace and checks that it
// lists each by its reference, complete and unpacked.
func testImported(t *testing.T, ctx context.Context, containerdBin string, archives []Archive, wantRefs []string) {
	_, runStatErr := os.Stat("/run/containerd")
	c := startContainerd(t, containerdBin)
	start := time.Now()
	if err := Import(ctx, c.ctr, c.address, archives); err != nil {
		t.Fatal(err)
	}
	t.Logf("importing %d archives: %v", len(archives), time.Since(start).Round(time.Millisecond))

	out, err := c.run(ctx, "images", "ls", "-q")
	if err != nil {
		t.Fatal(err)
	}
	listed := strings.Fields(out)
	for _, ref := range wantRefs {
		if !slices.Contains(listed, ref) {
			t.Errorf("ctr -n k8s.io images ls -q does not list %s; it lists %q", ref, listed)
		}
	}
	// `images check`: REF TYPE DIGEST STATUS SIZE UNPACKED, each image
	// complete (every blob present) and unpacked for the snapshotter.
	out, err = c.run(ctx, "images", "check")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[3], "complete") || f[len(f)-1] != "true" {
			t.Errorf("ctr images check: %q, want complete and unpacked", line)
		}
	}
	c.stop(t)
	if _, err := os.Stat("/run/containerd"); (err == nil) != (runStatErr == nil) {
		t.Errorf("/run/containerd on the host: before %v, after %v: containerd reached outside its mount namespace", runStatErr, err)
	}
}

type fileState struct {
	Size    int64
	ModTime time.Time
	Inode   uint64
}

func fileStates(t *testing.T, archives []Archive) map[string]fileState {
	t.Helper()
	out := map[string]fileState{}
	for _, a := range archives {
		fi, err := os.Stat(a.Path)
		if err != nil {
			t.Fatal(err)
		}
		out[a.Path] = fileState{fi.Size(), fi.ModTime(), fi.Sys().(*syscall.Stat_t).Ino}
	}
	return out
}

// testKubeProxyIptables unpacks the kube-proxy image and runs,
// chrooted into it and in a network namespace of the test's, what
// kube-proxy's iptables mode runs: iptables-restore and ip6tables-restore
// with rules that use the extensions it loads (comment, statistic, mark,
// conntrack, tcp), then iptables-save and ip6tables-save; and kube-proxy
// itself. The libraries and extensions come from the image alone.
func testKubeProxyIptables(t *testing.T, ctx context.Context, archives []Archive) {
	i := slices.IndexFunc(archives, func(a Archive) bool { return strings.Contains(a.Ref, "/kube-proxy:") })
	if i < 0 {
		t.Fatal("no kube-proxy image")
	}
	rootfs := t.TempDir()
	unpackImage(t, archives[i].Path, rootfs)

	// Every command runs chrooted into the image, in a network namespace
	// of the test's (kube-proxy's rules land there, not on the host).
	ns := fabric.NewNamespace(t, fabric.UniqueName("bmimg"))
	run := func(stdin string, argv ...string) string {
		t.Helper()
		cmd := ns.Command("chroot", append([]string{rootfs}, argv...)...)
		cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s in the kube-proxy image: %v\n%s", strings.Join(argv, " "), err, out)
		}
		return string(out)
	}
	if out := run("", "/usr/local/bin/kube-proxy", "--version"); strings.TrimSpace(out) != "Kubernetes "+KubernetesVersion {
		t.Errorf("kube-proxy --version = %q", out)
	}
	for _, name := range iptablesNames {
		if out := run("", name, "--version"); !strings.Contains(out, "(nf_tables)") {
			t.Errorf("%s --version = %q, want the nf_tables variant", name, out)
		}
	}
	// Rules as kube-proxy writes them, with the extensions it loads.
	for _, tc := range []struct {
		family string
		rules  []string
	}{{
		family: "ip",
		rules: []string{
			`-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000`,
			`-A KUBE-SERVICES -d 203.0.113.10/32 -p tcp -m comment --comment "default/web:http loadbalancer IP" -m tcp --dport 80 -j KUBE-SVC-TEST`,
			`-A KUBE-SVC-TEST -m comment --comment "default/web:http -> 198.51.100.5:8080" -m statistic --mode random --probability 0.50000000000 -j KUBE-MARK-MASQ`,
		},
	}, {
		family: "ip6",
		rules: []string{
			`-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000`,
			`-A KUBE-SERVICES -d 2001:db8::10/128 -p tcp -m comment --comment "default/web:http loadbalancer IP" -m tcp --dport 80 -j KUBE-MARK-MASQ`,
		},
	}} {
		input := "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-TEST - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n" +
			strings.Join(tc.rules, "\n") + "\nCOMMIT\n*filter\n:KUBE-FORWARD - [0:0]\n" +
			"-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\nCOMMIT\n"
		run(input, tc.family+"tables-restore", "--noflush")
		saved := run("", tc.family+"tables-save")
		for _, rule := range append(tc.rules, "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP") {
			if !strings.Contains(saved, rule) {
				t.Errorf("%stables-save does not hold %s:\n%s", tc.family, rule, saved)
			}
		}
	}
}

// unpackImage writes the image's filesystem into dir (the test's own
// image: its paths are trusted).
func unpackImage(t *testing.T, archive, dir string) {
	t.Helper()
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatal(err)
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, hdr.Name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, os.FileMode(hdr.Mode).Perm())
		case tar.TypeSymlink:
			err = os.Symlink(hdr.Linkname, p)
		case tar.TypeReg:
			var f *os.File
			if f, err = os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_EXCL, os.FileMode(hdr.Mode).Perm()); err == nil {
				_, err = io.Copy(f, tr)
				f.Close()
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}
