// Command cluster builds, shows and removes the real-node lab: a kubeadm
// cluster of real kubelets, containerd and kube-proxy in network and mount
// namespaces, three racks behind FRR ToRs, and the CCM as the DaemonSet of
// manifests/ (docs/real-cluster.md); the lab itself is test/realnode:
//
//	go run ./hack/cluster up       # as root
//	go run ./hack/cluster status
//	go run ./hack/cluster down
//
// With --e2e-bin and --coredns-bin the cluster is ready for Kubernetes' own
// e2e tests (make conformance, docs/conformance.md): the agnhost and CoreDNS
// images on every node, kubeadm's CoreDNS addon, the tester namespace, and
// the KUBE_TEST_REPO_LIST file in the cluster's directory.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/baremetal-ccm/baremetal-ccm/test/lab"
	"github.com/baremetal-ccm/baremetal-ccm/test/realnode"
)

func main() {
	fs := flag.NewFlagSet("cluster", flag.ExitOnError)
	dir := fs.String("dir", envOr("BMCCM_CLUSTER_DIR", "/var/tmp/bmccm-cluster"), "the cluster's directory (state, logs, nodes' data); missing, empty or an earlier cluster's")
	prefix := fs.String("prefix", "bmrn-", "prefix of the cluster's namespaces, links and cgroups (at most 6 bytes)")
	k8sBin := fs.String("k8s-bin", os.Getenv("BMCCM_K8S_BIN"), "directory with kubeadm, kubelet, kubectl, ... (hack/build-k8s.sh)")
	ctrBin := fs.String("containerd-bin", os.Getenv("BMCCM_CONTAINERD_BIN"), "directory with containerd, ctr, the runc shim (hack/build-containerd.sh)")
	etcdBin := fs.String("etcd-bin", os.Getenv("BMCCM_ETCD_BIN"), "directory with etcd v3.7 (hack/build-etcd.sh)")
	e2eBin := fs.String("e2e-bin", "", "directory with agnhost (hack/build-e2e.sh): with --coredns-bin, ready the cluster for Kubernetes' e2e tests")
	corednsBin := fs.String("coredns-bin", "", "directory with coredns (hack/build-coredns.sh): with --e2e-bin, ready the cluster for Kubernetes' e2e tests")
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: cluster up|down|status [flags]")
		fs.PrintDefaults()
	}
	if len(os.Args) < 2 {
		fs.Usage()
		os.Exit(2)
	}
	cmd := os.Args[1]
	_ = fs.Parse(os.Args[2:])
	if (*e2eBin == "") != (*corednsBin == "") {
		fmt.Fprintln(os.Stderr, "cluster: --e2e-bin and --coredns-bin go together")
		os.Exit(2)
	}
	o := realnode.Options{Prefix: *prefix, Dir: *dir, K8sBinDir: *k8sBin, ContainerdBinDir: *ctrBin,
		CCMTag: realnode.CCMTags[0], Conformance: *e2eBin != "",
		Logf: func(f string, a ...any) { fmt.Printf("cluster: "+f+"\n", a...) }}
	var err error
	switch cmd {
	case "up":
		self, e := os.Executable()
		if e != nil {
			err = e
			break
		}
		err = realnode.Launch(o, []string{self, "serve", "--dir=" + *dir, "--prefix=" + *prefix,
			"--k8s-bin=" + *k8sBin, "--containerd-bin=" + *ctrBin, "--etcd-bin=" + *etcdBin,
			"--e2e-bin=" + *e2eBin, "--coredns-bin=" + *corednsBin}, os.Stdout)
	case "serve":
		work := *dir + ".build"
		if err = os.MkdirAll(work, 0o755); err == nil {
			o.Images, err = realnode.BuildImages(context.Background(), realnode.ImageInputs{
				K8sBinDir: *k8sBin, EtcdBinDir: *etcdBin, WorkDir: work, E2EBinDir: *e2eBin, CoreDNSBinDir: *corednsBin})
			_ = os.RemoveAll(work)
		}
		if err == nil {
			err = realnode.Serve(o)
		}
	case "down":
		err = realnode.Stop(o)
	case "status":
		err = status(o)
	default:
		fs.Usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

func status(o realnode.Options) error {
	st, err := lab.ReadState(o.Dir)
	if err != nil {
		fmt.Println("cluster: not running")
		return nil
	}
	fmt.Printf("cluster: dir %s, prefix %s, ready %v, server pid %d\n", o.Dir, st.Prefix, st.Ready, st.ServerPID)
	if st.Kubeconfig != "" {
		fmt.Println("kubeconfig:", st.Kubeconfig)
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, l := range strings.Split(string(out), "\n") {
		if st.Prefix != "" && strings.HasPrefix(l, st.Prefix) {
			fmt.Println("namespace:", strings.Fields(l)[0])
		}
	}
	if list := realnode.E2ERepoList(o.Dir); fileExists(list) {
		fmt.Printf("e2e: KUBE_TEST_REPO_LIST=%s, tester namespace %s (source %s)\n", list, realnode.TesterNamespace(st.Prefix), realnode.TesterAddr)
	}
	return nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
