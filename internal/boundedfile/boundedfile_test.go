package boundedfile

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, size int64) string {
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
		f.Close()
		return p
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name        string
		path        string
		wantLen     int
		wantKind    string
		wantTooBig  bool
		wantMissing bool
	}{
		{name: "within the limit", path: write("small", 10), wantLen: 10},
		{name: "exactly the limit", path: write("exact", 100), wantLen: 100},
		{name: "over the limit, sparse 400 MiB", path: write("huge", 400<<20), wantTooBig: true},
		{name: "a FIFO does not hang", path: fifo, wantKind: "named pipe (FIFO)"},
		{name: "a directory", path: dir, wantKind: "directory"},
		{name: "a device", path: "/dev/zero", wantKind: "device"},
		{name: "missing", path: filepath.Join(dir, "nope"), wantMissing: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := Read(tc.path, 100)
			var nre *NotRegularError
			switch {
			case tc.wantKind != "":
				if !errors.As(err, &nre) || nre.Kind != tc.wantKind {
					t.Errorf("Read(%s) = %v, want a %s refused", tc.path, err, tc.wantKind)
				}
			case tc.wantTooBig:
				if !errors.Is(err, ErrTooLarge) {
					t.Errorf("Read(%s) = %v, want ErrTooLarge", tc.path, err)
				}
			case tc.wantMissing:
				if !errors.Is(err, os.ErrNotExist) {
					t.Errorf("Read(%s) = %v, want not found", tc.path, err)
				}
			default:
				if err != nil || len(data) != tc.wantLen {
					t.Errorf("Read(%s) = %d bytes, %v; want %d bytes", tc.path, len(data), err, tc.wantLen)
				}
			}
		})
	}
}
