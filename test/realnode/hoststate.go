package realnode

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// HostState is what of the machine a lab could leave changed: the root
// namespace's namespaces, mounts, cgroups, routes, links, rules and packet
// filter, and the host sysctls the kubelet and kube-proxy care about.
// Entries are filtered to what a lab with Prefix could own, so that other
// tests running at the same time do not show up.
type HostState struct {
	Sections map[string][]string
}

// hostSysctls are read, never written: the kubelet's kernel tunables,
// kube-proxy's conntrack sizing and forwarding/localnet switches.
var hostSysctls = []string{
	"/proc/sys/vm/overcommit_memory", "/proc/sys/vm/panic_on_oom",
	"/proc/sys/kernel/panic", "/proc/sys/kernel/panic_on_oops",
	"/proc/sys/kernel/keys/root_maxkeys", "/proc/sys/kernel/keys/root_maxbytes",
	"/proc/sys/net/netfilter/nf_conntrack_max", "/sys/module/nf_conntrack/parameters/hashsize",
	"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv4/conf/all/route_localnet",
	"/proc/sys/net/bridge/bridge-nf-call-iptables",
	"/proc/sys/net/ipv4/fib_multipath_hash_policy",
}

// CaptureHostState reads the machine's state for a lab whose names start
// with prefix and whose addresses are the lab plan's.
func CaptureHostState(ctx context.Context, prefix string) (HostState, error) {
	s := HostState{Sections: map[string][]string{}}
	lines := func(argv ...string) []string {
		out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).Output()
		if err != nil {
			return []string{"(" + strings.Join(argv, " ") + ": " + err.Error() + ")"}
		}
		return strings.Split(strings.TrimSpace(string(out)), "\n")
	}
	ours := func(l string) bool {
		if strings.Contains(l, prefix) {
			return true
		}
		for _, p := range labPrefixes() {
			if strings.Contains(l, p) {
				return true
			}
		}
		return false
	}
	s.Sections["netns"] = slices.DeleteFunc(lines("ip", "netns", "list"), func(l string) bool { return !strings.HasPrefix(l, prefix) })
	s.Sections["links"] = slices.DeleteFunc(lines("ip", "-o", "link", "show"), func(l string) bool { return !strings.Contains(l, prefix) })
	s.Sections["routes"] = slices.DeleteFunc(lines("ip", "-4", "route", "show", "table", "all"), func(l string) bool { return !ours(l) })
	s.Sections["rules"] = slices.DeleteFunc(lines("ip", "-4", "rule", "show"), func(l string) bool { return !ours(l) })
	s.Sections["mounts"] = slices.DeleteFunc(lines("cat", "/proc/self/mountinfo"), func(l string) bool {
		return !strings.Contains(l, prefix) && !strings.Contains(l, "containerd") && !strings.Contains(l, "kubelet")
	})
	if _, err := exec.LookPath("nft"); err == nil {
		s.Sections["nft"] = lines("nft", "list", "ruleset")
	}
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		if _, err := exec.LookPath(save); err == nil {
			s.Sections[save] = slices.DeleteFunc(lines(save), func(l string) bool { return strings.HasPrefix(l, "#") })
		}
	}
	mounts, err := cgroupMounts()
	if err != nil {
		return s, err
	}
	for _, m := range mounts {
		ents, _ := os.ReadDir(m)
		for _, e := range ents {
			// Every top-level cgroup, not only the lab's: a runtime
			// left to its defaults would make its own (k8s.io).
			if e.IsDir() {
				s.Sections["cgroups"] = append(s.Sections["cgroups"], filepath.Join(m, e.Name()))
			}
		}
	}
	for _, f := range hostSysctls {
		b, err := os.ReadFile(f)
		v := strings.TrimSpace(string(b))
		if err != nil {
			v = "(absent)"
		}
		s.Sections["sysctl"] = append(s.Sections["sysctl"], f+"="+v)
	}
	return s, nil
}

// labPrefixes are the lab plan's networks as they appear in routes.
func labPrefixes() []string {
	var out []string
	out = append(out, CoreNet.String(), PodNet.String(), ServiceNet.String(), PoolNet.String())
	for _, r := range Plan {
		out = append(out, r.Net.String())
	}
	return out
}

// Diff lists what differs between s (before) and after, section by section.
func (s HostState) Diff(after HostState) []string {
	var out []string
	keys := map[string]bool{}
	for k := range s.Sections {
		keys[k] = true
	}
	for k := range after.Sections {
		keys[k] = true
	}
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range keys {
			if !yield(k) {
				return
			}
		}
	}) {
		b, a := s.Sections[k], after.Sections[k]
		for _, l := range a {
			if !slices.Contains(b, l) {
				out = append(out, fmt.Sprintf("%s: + %s", k, l))
			}
		}
		for _, l := range b {
			if !slices.Contains(a, l) {
				out = append(out, fmt.Sprintf("%s: - %s", k, l))
			}
		}
	}
	return out
}

// NamespaceIDs returns the network and mount namespaces of the nodes'
// holders (their /proc/PID/ns links), to check after teardown that no
// process is left in any of them.
func (c *Cluster) NamespaceIDs() []string {
	var out []string
	for _, n := range c.Nodes {
		if n.holder == nil || n.holder.PID() == 0 {
			continue
		}
		for _, ns := range []string{"net", "mnt"} {
			if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", n.holder.PID(), ns)); err == nil {
				out = append(out, l)
			}
		}
	}
	return out
}

// ProcessesIn returns the processes whose network or mount namespace is
// one of ids.
func ProcessesIn(ids []string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		for _, ns := range []string{"net", "mnt"} {
			l, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns", ns))
			if err == nil && slices.Contains(ids, l) {
				comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
				out = append(out, e.Name()+" "+strings.TrimSpace(string(comm)))
				break
			}
		}
	}
	return out
}
