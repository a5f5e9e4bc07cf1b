package main

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestCgroupMemoryLimit(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	for _, tc := range []struct {
		name       string
		files      fstest.MapFS
		wantLimit  int64
		wantSource string
		wantErr    string
	}{
		{
			name: "cgroup v2 inside a container (cgroup namespace): the mount's root",
			files: fstest.MapFS{
				"proc/self/cgroup":         file("0::/\n"),
				"sys/fs/cgroup/memory.max": file("536870912\n"),
			},
			wantLimit: 536870912, wantSource: "/sys/fs/cgroup/memory.max",
		},
		{
			name: "cgroup v2 on a host: the process's own cgroup",
			files: fstest.MapFS{
				"proc/self/cgroup": file("0::/kubepods.slice/pod1/ccm\n"),
				"sys/fs/cgroup/kubepods.slice/pod1/ccm/memory.max": file("268435456\n"),
				"sys/fs/cgroup/memory.max":                         file("max\n"),
			},
			wantLimit: 268435456, wantSource: "/sys/fs/cgroup/kubepods.slice/pod1/ccm/memory.max",
		},
		{
			name:       "cgroup v2 without a limit",
			files:      fstest.MapFS{"proc/self/cgroup": file("0::/\n"), "sys/fs/cgroup/memory.max": file("max\n")},
			wantSource: "/sys/fs/cgroup/memory.max",
		},
		{
			name: "cgroup v1 (hybrid), the container's cgroup mounted at the root",
			files: fstest.MapFS{
				"proc/self/cgroup":                           file("12:pids:/\n4:memory:/kubepods/burstable/pod1/abc\n0::/\n"),
				"sys/fs/cgroup/memory/memory.limit_in_bytes": file("536870912\n"),
			},
			wantLimit: 536870912, wantSource: "/sys/fs/cgroup/memory/memory.limit_in_bytes",
		},
		{
			name: "cgroup v1 without a limit: the largest page-aligned number",
			files: fstest.MapFS{
				"proc/self/cgroup":                           file("4:memory:/\n"),
				"sys/fs/cgroup/memory/memory.limit_in_bytes": file("9223372036854771712\n"),
			},
			wantSource: "/sys/fs/cgroup/memory/memory.limit_in_bytes",
		},
		{
			name: "garbage in the limit file",
			files: fstest.MapFS{
				"proc/self/cgroup":         file("0::/\n"),
				"sys/fs/cgroup/memory.max": file("lots\n"),
			},
			wantErr: `/sys/fs/cgroup/memory.max holds "lots"`,
		},
		{
			name:    "no cgroup file system",
			files:   fstest.MapFS{"proc/self/cgroup": file("0::/\n")},
			wantErr: "no cgroup memory limit file",
		},
		{
			name:    "no /proc",
			files:   fstest.MapFS{},
			wantErr: "reading the process's cgroups",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			limit, source, err := cgroupMemoryLimit(tc.files)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if limit != tc.wantLimit || source != tc.wantSource {
				t.Errorf("limit %d from %s, want %d from %s", limit, source, tc.wantLimit, tc.wantSource)
			}
		})
	}
}
