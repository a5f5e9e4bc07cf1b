package realnode

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// CloudConfig is the lab's cloud config: its racks, its pool, two peer
// entries per ToR (dialled directly by the replicas of its rack, over
// multihop by the others) and health checks tuned for fast tests.
func (c *Cluster) CloudConfig() string {
	var b strings.Builder
	b.WriteString("region: lab\nracks:\n")
	for _, r := range c.Racks {
		fmt.Fprintf(&b, "- name: %s\n  zone: zone-%s\n  subnets: [%s]\n", r.Name, r.letter(), r.Net)
	}
	fmt.Fprintf(&b, "pools:\n- name: public\n  addresses: [%s]\n  avoidBuggyIPs: true\n", PoolNet)
	// Pod routes: every replica announces each Node's pod CIDR to the ToR
	// of its rack; the fabric (here the client, acting as the spine)
	// carries them to the other racks (docs/routes.md).
	fmt.Fprintf(&b, "routes:\n  clusterCIDRs: [%s]\n  announceTo: rack\n", PodNet)
	fmt.Fprintf(&b, "bgp:\n  asn: %d\n  holdTime: %ds\n  peers:\n", CCMASN, HoldTime)
	// Rack-aware peering (docs/reference/config.md#peering-by-rack-dialfrom):
	// a replica peers with its own rack's ToR directly, with GTSM, and
	// with the other racks' ToRs over eBGP multihop. The config does not
	// say where the control-plane nodes are: rack c, which has none,
	// hears from every replica over multihop.
	for _, r := range c.Racks {
		var others []string
		for _, o := range c.Racks {
			if o != r {
				others = append(others, o.Name)
			}
		}
		peer := fmt.Sprintf("    address: %s\n    asn: %d\n    rack: %s\n    passwordFile: /etc/baremetal-ccm-bgp/%s\n",
			gateway(r.RackPlan), r.ASN, r.Name, r.torName())
		fmt.Fprintf(&b, "  - name: %s\n%s    ttlSecurity: 1\n    dialFrom: {racks: [%s]}\n", r.torName(), peer, r.Name)
		fmt.Fprintf(&b, "  - name: %s-multihop\n%s    ebgpMultihop: %d\n    dialFrom: {racks: [%s]}\n",
			r.torName(), peer, multihopTTL, strings.Join(others, ", "))
	}
	b.WriteString("healthCheck:\n  enabled: true\n  port: 10256\n  path: /healthz\n  interval: 500ms\n  timeout: 400ms\n  unhealthyThreshold: 2\n  healthyThreshold: 2\n")
	return b.String()
}

// overlayDir is the kustomize overlay of manifests/ the lab applies.
func (c *Cluster) overlayDir() string { return filepath.Join(c.Opts.Dir, "ccm-overlay") }

// writeOverlay writes an overlay of the repository's manifests/ that
// changes only the image tag, the cloud config and the BGP passwords: what
// docs/install.md tells a user to write.
func (c *Cluster) writeOverlay(tag string) error {
	dir := c.overlayDir()
	if err := os.MkdirAll(filepath.Join(dir, "bgp-passwords"), 0o755); err != nil {
		return err
	}
	base, err := filepath.Rel(dir, filepath.Join(c.repo, "manifests"))
	if err != nil {
		return err
	}
	var files []string
	for _, r := range c.Racks {
		f := "bgp-passwords/" + r.torName()
		files = append(files, f)
		if err := os.WriteFile(filepath.Join(dir, f), []byte(c.passwords[r.torName()]+"\n"), 0o600); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "cloud.yaml"), []byte(c.CloudConfig()), 0o644); err != nil {
		return err
	}
	k := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- %s
configMapGenerator:
- name: baremetal-ccm-cloud-config
  namespace: kube-system
  behavior: replace
  files: [cloud.yaml]
secretGenerator:
- name: baremetal-ccm-bgp-passwords
  namespace: kube-system
  behavior: replace
  type: Opaque
  files: [%s]
generatorOptions:
  disableNameSuffixHash: true
images:
- name: %s
  newTag: %s
`, base, strings.Join(files, ", "), CCMImage, tag)
	return os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644)
}

// InstallCCM applies the overlay with the CCM image tagged tag: the
// install, and later a rolling update to a new tag.
func (c *Cluster) InstallCCM(ctx context.Context, tag string) error {
	if err := c.writeOverlay(tag); err != nil {
		return err
	}
	out, err := c.Kubectl(ctx, "apply", "--server-side", "-k", c.overlayDir())
	if err != nil {
		return fmt.Errorf("installing the CCM: %w\n%s", err, out)
	}
	c.CCMTag = tag
	return nil
}

// Kubectl runs kubectl with the cluster's admin kubeconfig.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) ([]byte, error) {
	return runCmd(ctx, append([]string{filepath.Join(c.Opts.K8sBinDir, "kubectl"), "--kubeconfig", c.Kubeconfig}, args...)...)
}

// ccmSelector selects the CCM's pods.
const ccmSelector = "app.kubernetes.io/name=baremetal-cloud-controller-manager"

// WaitCCMRolledOut waits until every CCM pod runs the DaemonSet's
// current template and is available.
func (c *Cluster) WaitCCMRolledOut(ctx context.Context) error {
	return waitFor(ctx, 10*time.Minute, func() error {
		d, err := c.Kube.AppsV1().DaemonSets("kube-system").Get(ctx, "baremetal-cloud-controller-manager", metav1.GetOptions{})
		if err != nil {
			return err
		}
		s := d.Status
		if s.ObservedGeneration < d.Generation || s.UpdatedNumberScheduled != s.DesiredNumberScheduled || s.NumberAvailable != s.DesiredNumberScheduled {
			return fmt.Errorf("CCM rollout: %d of %d updated, %d available", s.UpdatedNumberScheduled, s.DesiredNumberScheduled, s.NumberAvailable)
		}
		return nil
	})
}

// CCMLeaderPod returns the name of the CCM pod holding the leader lease:
// the lease's holder is "<hostname>_<id>", and a host-network pod's
// hostname is its node's.
func (c *Cluster) CCMLeaderPod(ctx context.Context) (string, error) {
	var pod string
	err := waitFor(ctx, 2*time.Minute, func() error {
		l, err := c.Kube.CoordinationV1().Leases("kube-system").Get(ctx, "cloud-controller-manager", metav1.GetOptions{})
		if err != nil {
			return err
		}
		holder := ptr.Deref(l.Spec.HolderIdentity, "")
		node, _, _ := strings.Cut(holder, "_")
		pods, err := c.Kube.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: ccmSelector})
		if err != nil {
			return err
		}
		for _, p := range pods.Items {
			if p.Spec.NodeName == node && p.DeletionTimestamp == nil {
				pod = p.Name
				return nil
			}
		}
		return fmt.Errorf("no CCM pod on %q, the lease holder's node", node)
	})
	return pod, err
}
