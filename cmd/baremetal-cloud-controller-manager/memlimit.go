package main

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"

	"k8s.io/klog/v2"
)

// memoryLimitShare is the part of the container's memory limit the Go
// runtime aims to stay under: the rest is for what it does not count
// (thread stacks outside the heap, the binary's own pages) and a margin.
const memoryLimitShare = 0.9

// noMemoryLimit: a cgroup v1 limit this large (or v2's "max") is none.
const noMemoryLimit = 1 << 62

// setMemoryLimit sets the Go runtime's soft memory limit to 90 % of the
// memory limit of this process's cgroup (the DaemonSet's
// resources.limits.memory), unless GOMEMLIMIT is set or there is no limit.
// Without it the collector lets the heap grow to twice the live heap
// before it works, and a replica with a large live heap (many VIPs) is
// killed by the kernel instead of collecting sooner. It returns the limit
// it set, 0 if none.
func setMemoryLimit(logger klog.Logger, root fs.FS) int64 {
	if v, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		logger.V(2).Info("Memory limit from GOMEMLIMIT", "GOMEMLIMIT", v)
		return 0
	}
	limit, source, err := cgroupMemoryLimit(root)
	if err != nil {
		logger.Info("Warning: the container's memory limit is unknown; the Go runtime's memory limit stays unset", "err", err)
		return 0
	}
	if limit == 0 {
		return 0
	}
	soft := int64(float64(limit) * memoryLimitShare)
	debug.SetMemoryLimit(soft)
	logger.Info("Go runtime memory limit set below the container's", "limit", limit, "source", source, "goMemLimit", soft)
	return soft
}

// cgroupMemoryLimit reads this process's memory limit in bytes from root
// (the file system's root: /proc/self/cgroup, then the cgroup v2 file
// memory.max or the v1 file memory.limit_in_bytes, where the process's
// cgroup is, else at the mount's root, as inside a container). 0: no
// limit. An error: none of the files could be read, or one held garbage.
func cgroupMemoryLimit(root fs.FS) (limit int64, source string, err error) {
	f, err := root.Open("proc/self/cgroup")
	if err != nil {
		return 0, "", fmt.Errorf("reading the process's cgroups: %w", err)
	}
	defer f.Close()
	var candidates []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// hierarchy-ID:controllers:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		cgroup := strings.TrimPrefix(path.Clean(parts[2]), "/")
		switch {
		case parts[0] == "0" && parts[1] == "":
			candidates = append(candidates, path.Join("sys/fs/cgroup", cgroup, "memory.max"), "sys/fs/cgroup/memory.max")
		case slices.Contains(strings.Split(parts[1], ","), "memory"):
			candidates = append(candidates, path.Join("sys/fs/cgroup/memory", cgroup, "memory.limit_in_bytes"), "sys/fs/cgroup/memory/memory.limit_in_bytes")
		}
	}
	if err := sc.Err(); err != nil {
		return 0, "", fmt.Errorf("reading the process's cgroups: %w", err)
	}
	for _, name := range candidates {
		b, err := fs.ReadFile(root, name)
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(b))
		if v == "max" {
			return 0, "/" + name, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return 0, "", fmt.Errorf("/%s holds %q, not a number of bytes or \"max\"", name, v)
		}
		if n >= noMemoryLimit {
			return 0, "/" + name, nil
		}
		return n, "/" + name, nil
	}
	return 0, "", fmt.Errorf("no cgroup memory limit file among %v", candidates)
}
