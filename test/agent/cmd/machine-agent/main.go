// Command machine-agent is a test-only stand-in for kubelet and kube-proxy
// on one lab machine. Run inside the machine's network namespace, it
//
//   - registers its Node as a kubelet started with --cloud-provider=external
//     does (the uninitialized taint, the provided-node-ip annotation) and
//     keeps the Ready condition fresh;
//   - serves kube-proxy's /healthz on :10256 (503 while --fail-file exists);
//   - binds the addresses of every LoadBalancer Service to lo (/32, /128)
//     and removes them when they are gone;
//   - answers HTTP on the Services' ports with its node name.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	cloudproviderapi "k8s.io/cloud-provider/api"
	"k8s.io/klog/v2"
)

func main() {
	var (
		kubeconfig = flag.String("kubeconfig", "", "kubeconfig of the lab's apiserver")
		nodeName   = flag.String("node-name", "", "the Node's name")
		nodeIPs    = flag.String("node-ip", "", "the node's IPv4[,IPv6] address")
		healthz    = flag.String("healthz-bind-address", ":10256", "kube-proxy's healthz address")
		failFile   = flag.String("fail-file", "", "while this file exists /healthz answers 503")
		heartbeat  = flag.Duration("heartbeat", 2*time.Second, "how often the Ready condition is renewed")
	)
	klog.InitFlags(nil)
	flag.Parse()
	if *kubeconfig == "" || *nodeName == "" || *nodeIPs == "" {
		fmt.Fprintln(os.Stderr, "machine-agent: --kubeconfig, --node-name and --node-ip are required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx = klog.NewContext(ctx, klog.Background().WithValues("node", *nodeName))
	a := &agent{name: *nodeName, nodeIPs: *nodeIPs, failFile: *failFile, heartbeat: *heartbeat,
		bound: map[netip.Addr]bool{}, listeners: map[int32]net.Listener{}}
	if err := a.run(ctx, *kubeconfig, *healthz); err != nil && !errors.Is(err, context.Canceled) {
		klog.FromContext(ctx).Error(err, "machine-agent failed")
		os.Exit(1)
	}
}

type agent struct {
	name, nodeIPs, failFile string
	heartbeat               time.Duration
	client                  kubernetes.Interface

	mu        sync.Mutex
	bound     map[netip.Addr]bool
	listeners map[int32]net.Listener
	wg        sync.WaitGroup
}

func (a *agent) run(ctx context.Context, kubeconfig, healthzAddr string) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	if a.client, err = kubernetes.NewForConfig(cfg); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	hl, err := net.Listen("tcp", healthzAddr)
	if err != nil {
		return fmt.Errorf("healthz: %w", err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(a.serveHealthz), ReadHeaderTimeout: 5 * time.Second}
	a.wg.Go(func() { _ = hs.Serve(hl) })
	a.wg.Go(func() { <-ctx.Done(); _ = hs.Close() })

	if err := a.register(ctx); err != nil {
		return err
	}
	a.wg.Go(func() { a.keepReady(ctx) })

	factory := informers.NewSharedInformerFactory(a.client, 0)
	svcs := factory.Core().V1().Services()
	inf := svcs.Informer()
	kick := make(chan struct{}, 1)
	notify := func(any) {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: notify, DeleteFunc: notify, UpdateFunc: func(_, n any) { notify(n) },
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return ctx.Err()
	}
	logger := klog.FromContext(ctx)
	logger.Info("machine agent running")
	for {
		select {
		case <-ctx.Done():
			a.teardown(logger)
			a.wg.Wait()
			return ctx.Err()
		case <-kick:
		}
		list, err := svcs.Lister().List(labels.Everything())
		if err != nil {
			logger.Error(err, "listing services")
			continue
		}
		a.reconcile(ctx, list)
	}
}

func (a *agent) serveHealthz(w http.ResponseWriter, _ *http.Request) {
	if a.failFile != "" {
		if _, err := os.Stat(a.failFile); err == nil {
			http.Error(w, "failing on purpose", http.StatusServiceUnavailable)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"lastUpdated": time.Now().UTC().Format(time.RFC3339)})
}

// register creates the Node as kubelet --cloud-provider=external does.
func (a *agent) register(ctx context.Context) error {
	n := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        a.name,
			Labels:      map[string]string{"kubernetes.io/hostname": a.name, "kubernetes.io/os": "linux"},
			Annotations: map[string]string{cloudproviderapi.AnnotationAlphaProvidedIPAddr: a.nodeIPs},
		},
		Spec: v1.NodeSpec{Taints: []v1.Taint{{
			Key: cloudproviderapi.TaintExternalCloudProvider, Value: "true", Effect: v1.TaintEffectNoSchedule,
		}}},
	}
	for {
		_, err := a.client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
		if err == nil || apierrors.IsAlreadyExists(err) {
			return a.setReady(ctx)
		}
		klog.FromContext(ctx).Error(err, "registering node, retrying")
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// setReady patches the Ready condition (merge key: type), leaving the
// rest of the status to the cloud node controller.
func (a *agent) setReady(ctx context.Context) error {
	now := metav1.Now()
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []v1.NodeCondition{{
		Type: v1.NodeReady, Status: v1.ConditionTrue, Reason: "KubeletReady", Message: "machine-agent is posting ready status",
		LastHeartbeatTime: now, LastTransitionTime: now,
	}}}})
	if err != nil {
		return err
	}
	_, err = a.client.CoreV1().Nodes().Patch(ctx, a.name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil {
		return fmt.Errorf("patching node %s Ready: %w", a.name, err)
	}
	return nil
}

func (a *agent) keepReady(ctx context.Context) {
	t := time.NewTicker(a.heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := a.setReady(ctx); err != nil && ctx.Err() == nil {
			klog.FromContext(ctx).Error(err, "heartbeat")
		}
	}
}

// reconcile binds exactly the LoadBalancer Services' addresses and serves
// exactly their ports.
func (a *agent) reconcile(ctx context.Context, svcs []*v1.Service) {
	logger := klog.FromContext(ctx)
	addrs := map[netip.Addr]bool{}
	ports := map[int32]bool{}
	for _, s := range svcs {
		if s.Spec.Type != v1.ServiceTypeLoadBalancer {
			continue
		}
		for _, in := range s.Status.LoadBalancer.Ingress {
			if ip, err := netip.ParseAddr(in.IP); err == nil {
				addrs[ip] = true
			}
		}
		for _, p := range s.Spec.Ports {
			if p.Protocol == v1.ProtocolTCP || p.Protocol == "" {
				ports[p.Port] = true
			}
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for ip := range addrs {
		if a.bound[ip] {
			continue
		}
		if err := ipAddr("add", ip); err != nil {
			logger.Error(err, "binding address", "address", ip)
			continue
		}
		a.bound[ip] = true
		logger.V(2).Info("bound", "address", ip)
	}
	for ip := range a.bound {
		if addrs[ip] {
			continue
		}
		if err := ipAddr("del", ip); err != nil {
			logger.Error(err, "unbinding address", "address", ip)
		}
		delete(a.bound, ip)
	}
	for p := range ports {
		if _, ok := a.listeners[p]; ok {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("::", strconv.Itoa(int(p))))
		if err != nil {
			logger.Error(err, "listening", "port", p)
			continue
		}
		a.listeners[p] = l
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Connection", "close")
			fmt.Fprintln(w, a.name)
		}), ReadHeaderTimeout: 5 * time.Second}
		a.wg.Go(func() { _ = srv.Serve(l) })
	}
	for p, l := range a.listeners {
		if !ports[p] {
			_ = l.Close()
			delete(a.listeners, p)
		}
	}
}

func (a *agent) teardown(logger klog.Logger) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for ip := range a.bound {
		if err := ipAddr("del", ip); err != nil {
			logger.Error(err, "unbinding address", "address", ip)
		}
	}
	for _, l := range a.listeners {
		_ = l.Close()
	}
}

func ipAddr(op string, ip netip.Addr) error {
	bits := 32
	if ip.Is6() {
		bits = 128
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "addr", op, netip.PrefixFrom(ip, bits).String(), "dev", "lo").CombinedOutput()
	if err != nil && !(op == "add" && strings.Contains(string(out), "File exists")) {
		return fmt.Errorf("ip addr %s %s: %w: %s", op, ip, err, strings.TrimSpace(string(out)))
	}
	return nil
}
