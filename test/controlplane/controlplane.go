// Package controlplane runs a real Kubernetes control plane for tests and
// the lab: etcd (Debian's etcd-server) and kube-apiserver (built from the
// Kubernetes source by hack/build-k8s.sh), with RBAC on, on free ports.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Options configure [Start].
type Options struct {
	// Dir holds data, certificates, logs and the kubeconfig. Required.
	Dir string
	// BindAddress is where kube-apiserver listens; default 127.0.0.1. The
	// lab binds an address that its network namespaces reach.
	BindAddress string
	// BinDir holds kube-apiserver; default: see [BinDir].
	BinDir string
}

// ControlPlane is a running etcd and kube-apiserver.
type ControlPlane struct {
	// URL is the apiserver's address, https://host:port.
	URL string
	// Kubeconfig is the path of an admin (system:masters) kubeconfig.
	Kubeconfig string
	// Config and Client are for that admin.
	Config *rest.Config
	Client kubernetes.Interface
	// CAFile is the CA that signed the apiserver's certificate.
	CAFile string

	dir        string
	etcd, apis *exec.Cmd
	exited     map[*exec.Cmd]chan struct{}
}

// Start runs etcd and kube-apiserver and waits until the apiserver is ready.
// On error, whatever was started is stopped again.
func Start(ctx context.Context, opts Options) (_ *ControlPlane, err error) {
	if opts.Dir == "" {
		return nil, errors.New("controlplane: Options.Dir is required")
	}
	if opts.BindAddress == "" {
		opts.BindAddress = "127.0.0.1"
	}
	bindIP := net.ParseIP(opts.BindAddress)
	if bindIP == nil {
		return nil, fmt.Errorf("controlplane: BindAddress %q is not an IP address", opts.BindAddress)
	}
	if opts.BinDir == "" {
		if opts.BinDir, err = BinDir(ctx); err != nil {
			return nil, err
		}
	}
	etcdBin, err := exec.LookPath("etcd")
	if err != nil {
		return nil, fmt.Errorf("controlplane: etcd not found (apt-get install etcd-server): %w", err)
	}

	cp := &ControlPlane{dir: opts.Dir, exited: map[*exec.Cmd]chan struct{}{}}
	defer func() {
		if err != nil {
			cp.Stop()
		}
	}()

	pki, err := newPKI(opts.Dir, []net.IP{bindIP, net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("controlplane: %w", err)
	}
	cp.CAFile = pki.caFile

	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdClient := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	etcdPeer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	cp.etcd, err = cp.run(etcdBin, "etcd.log",
		"--name=default",
		"--data-dir="+filepath.Join(opts.Dir, "etcd"),
		"--listen-client-urls="+etcdClient, "--advertise-client-urls="+etcdClient,
		"--listen-peer-urls="+etcdPeer, "--initial-advertise-peer-urls="+etcdPeer,
		"--initial-cluster=default="+etcdPeer,
		"--log-level=warn",
	)
	if err != nil {
		return nil, err
	}

	apiPort := ports[2]
	cp.URL = "https://" + net.JoinHostPort(opts.BindAddress, strconv.Itoa(apiPort))
	cp.apis, err = cp.run(filepath.Join(opts.BinDir, "kube-apiserver"), "kube-apiserver.log",
		"--etcd-servers="+etcdClient,
		"--bind-address="+opts.BindAddress,
		"--advertise-address="+opts.BindAddress,
		"--secure-port="+strconv.Itoa(apiPort),
		"--cert-dir="+filepath.Join(opts.Dir, "apiserver-certs"),
		"--tls-cert-file="+pki.serverCertFile,
		"--tls-private-key-file="+pki.serverKeyFile,
		"--client-ca-file="+pki.caFile,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+pki.saKeyFile,
		"--service-account-signing-key-file="+pki.saKeyFile,
		// ClusterIPs are never routed in tests; the range only has to hold the Services.
		"--service-cluster-ip-range=10.96.0.0/16,2001:db8:ffff::/112",
		"--authorization-mode=RBAC",
		"--profiling=false",
		// Nothing runs in-cluster here, and a loopback advertise address is
		// refused by the reconciler of the kubernetes Service endpoints.
		"--endpoint-reconciler-type=none",
	)
	if err != nil {
		return nil, err
	}

	cp.Kubeconfig = filepath.Join(opts.Dir, "admin.kubeconfig")
	if err := writeKubeconfig(cp.Kubeconfig, cp.URL, pki); err != nil {
		return nil, err
	}
	if cp.Config, err = clientcmd.BuildConfigFromFlags("", cp.Kubeconfig); err != nil {
		return nil, fmt.Errorf("controlplane: loading kubeconfig: %w", err)
	}
	cp.Config.QPS, cp.Config.Burst = 200, 400
	if cp.Client, err = kubernetes.NewForConfig(cp.Config); err != nil {
		return nil, fmt.Errorf("controlplane: %w", err)
	}
	if err := cp.waitReady(ctx, 90*time.Second); err != nil {
		return nil, err
	}
	return cp, nil
}

// Stop ends kube-apiserver and etcd. It is safe to call more than once.
func (cp *ControlPlane) Stop() {
	for _, c := range []*exec.Cmd{cp.apis, cp.etcd} {
		if c == nil || c.Process == nil {
			continue
		}
		_ = c.Process.Signal(syscall.SIGTERM)
		select {
		case <-cp.exited[c]:
		case <-time.After(10 * time.Second):
			_ = c.Process.Kill()
			<-cp.exited[c]
		}
	}
}

// LogTail returns the last lines of each component's log, for a failing test.
func (cp *ControlPlane) LogTail(lines int) string {
	var b strings.Builder
	for _, name := range []string{"etcd.log", "kube-apiserver.log"} {
		data, _ := os.ReadFile(filepath.Join(cp.dir, name))
		all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(all) > lines {
			all = all[len(all)-lines:]
		}
		fmt.Fprintf(&b, "--- %s (last %d lines)\n%s\n", name, len(all), strings.Join(all, "\n"))
	}
	return b.String()
}

func (cp *ControlPlane) run(bin, logName string, args ...string) (*exec.Cmd, error) {
	logFile, err := os.Create(filepath.Join(cp.dir, logName))
	if err != nil {
		return nil, fmt.Errorf("controlplane: %w", err)
	}
	c := exec.Command(bin, args...)
	c.Stdout, c.Stderr = logFile, logFile
	// The processes must not outlive a test binary that dies without cleanup.
	c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := c.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("controlplane: starting %s: %w", bin, err)
	}
	done := make(chan struct{})
	cp.exited[c] = done
	go func() {
		_ = c.Wait()
		logFile.Close()
		close(done)
	}()
	return c, nil
}

func (cp *ControlPlane) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		body, err := cp.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil {
			return nil
		}
		last = fmt.Errorf("%w: %s", err, body)
		for c, name := range map[*exec.Cmd]string{cp.etcd: "etcd", cp.apis: "kube-apiserver"} {
			select {
			case <-cp.exited[c]:
				return fmt.Errorf("controlplane: %s exited during start-up\n%s", name, cp.LogTail(30))
			default:
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("controlplane: apiserver not ready after %s: %w\n%s", timeout, last, cp.LogTail(30))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func writeKubeconfig(path, server string, p *pki) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: p.caPEM}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: p.adminCertPEM, ClientKeyData: p.adminKeyPEM}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "admin"}
	cfg.CurrentContext = "test"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("controlplane: writing kubeconfig: %w", err)
	}
	return nil
}

// WriteTokenKubeconfig writes a kubeconfig that authenticates with a bearer
// token, for running a component as a ServiceAccount.
func (cp *ControlPlane) WriteTokenKubeconfig(path, token string) error {
	caPEM, err := os.ReadFile(cp.CAFile)
	if err != nil {
		return fmt.Errorf("controlplane: %w", err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: cp.URL, CertificateAuthorityData: caPEM}
	cfg.AuthInfos["sa"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "sa"}
	cfg.CurrentContext = "test"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("controlplane: writing kubeconfig: %w", err)
	}
	return nil
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("controlplane: finding a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// BinDir returns the directory holding kube-apiserver, kubeadm and kubectl:
// $BMCCM_K8S_BIN if set, else what hack/build-k8s.sh prints (it builds them
// on the first run and reuses its cache afterwards).
func BinDir(ctx context.Context) (string, error) {
	if d := os.Getenv("BMCCM_K8S_BIN"); d != "" {
		return d, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "hack", "build-k8s.sh"))
	cmd.Stderr = io.Discard
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("controlplane: hack/build-k8s.sh failed (run it by hand to see why): %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// RepoRoot is the directory holding this module's go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(data), "module github.com/baremetal-ccm/baremetal-ccm\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("controlplane: not inside the baremetal-ccm repository")
		}
		dir = parent
	}
}

func lookPath(tool string) (string, error) { return exec.LookPath(tool) }
