package realnode

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// leaseDir holds one lease file per real-node lab on this machine. It is
// on /run, a tmpfs: after a reboot the labs and their leases are gone
// together. The last lab down removes it (and its parent) again.
var leaseDir = "/run/baremetal-ccm/realnode"

// removeLease removes the lease file of prefix, then leaseDir and its
// parent if they are empty.
func removeLease(prefix string) error {
	if err := os.Remove(filepath.Join(leaseDir, prefix)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if os.Remove(leaseDir) == nil {
		_ = os.Remove(filepath.Dir(leaseDir))
	}
	return nil
}

// Every lab has the same address plan (the root namespace's route to the
// control-plane endpoint, the core LAN), so one runs at a time on a
// machine. A lab holds an exclusive flock on its lease file for as long
// as the process that built it lives. A lab whose process died without
// taking it down (a SIGKILLed test, a session stopped in the middle of a
// run) leaves a lease nobody holds: the next lab removes what that one
// left, and only that, instead of failing on its route ("File exists").

// leaseRecord is what a lease file says of its lab.
type leaseRecord struct {
	Prefix string `json:"prefix"`
	Dir    string `json:"dir"`
	PID    int    `json:"pid"`
}

// lease is a held lease; release gives it up.
type lease struct {
	f    *os.File
	path string
}

// ErrLabRunning is returned when another live process holds a lab on
// this machine.
var ErrLabRunning = errors.New("another real-node lab is running on this machine")

// takeLease removes labs that dead processes left behind, then takes the
// lease for the lab with prefix and dir. It fails with [ErrLabRunning]
// while another process holds a lab.
func takeLease(prefix, dir string, logf func(string, ...any)) (*lease, error) {
	if prefix == "" || filepath.Base(prefix) != prefix {
		return nil, fmt.Errorf("realnode: prefix %q is not a file name", prefix)
	}
	if err := os.MkdirAll(leaseDir, 0o755); err != nil {
		return nil, fmt.Errorf("realnode: lease directory: %w", err)
	}
	if err := ReapStale(logf); err != nil {
		return nil, err
	}
	path := filepath.Join(leaseDir, prefix)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, os.ErrNotExist) {
		// A lab that went down just now removed the empty directory.
		if err = os.MkdirAll(leaseDir, 0o755); err == nil {
			f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("realnode: lease for prefix %s: %w", prefix, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("realnode: locking %s: %w", path, err)
	}
	rec, _ := json.Marshal(leaseRecord{Prefix: prefix, Dir: dir, PID: os.Getpid()})
	if _, err := f.Write(rec); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("realnode: writing %s: %w", path, err)
	}
	return &lease{f: f, path: path}, nil
}

// release drops the lock. The file goes with a complete [Cleanup]; one
// that failed leaves it for the next lab to reap. It is safe on a nil
// lease and to call twice.
func (l *lease) release() {
	if l == nil || l.f == nil {
		return
	}
	l.f.Close()
	l.f = nil
}

// ReapStale cleans up every lab whose lease nobody holds, and fails with
// [ErrLabRunning] if a live process holds one. A new lab does it before it
// builds; a test that compares the machine before and after calls it
// first, so that what it removes is not counted as its own change.
func ReapStale(logf func(string, ...any)) error {
	ents, err := os.ReadDir(leaseDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("realnode: lease directory: %w", err)
	}
	var errs []error
	for _, e := range ents {
		path := filepath.Join(leaseDir, e.Name())
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if errors.Is(err, os.ErrNotExist) {
			continue // released while we looked
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("realnode: opening %s: %w", path, err))
			continue
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			var rec leaseRecord
			_ = json.NewDecoder(f).Decode(&rec)
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				errs = append(errs, fmt.Errorf("%w: prefix %q, pid %d, directory %s (lease %s); take it down first (go run ./hack/cluster stop, or end that test)",
					ErrLabRunning, rec.Prefix, rec.PID, rec.Dir, path))
				continue
			}
			errs = append(errs, fmt.Errorf("realnode: locking %s: %w", path, err))
			continue
		}
		errs = append(errs, reapOne(f, path, logf))
	}
	return errors.Join(errs...)
}

// reapOne removes the lab of a lease file it holds the lock of (f), then
// the lease file.
func reapOne(f *os.File, path string, logf func(string, ...any)) error {
	defer f.Close()
	var rec leaseRecord
	if err := json.NewDecoder(f).Decode(&rec); err != nil || rec.Prefix == "" || rec.Prefix != filepath.Base(path) {
		// A process killed between creating the file and writing it
		// built nothing yet: the file is all there is.
		logf("removing the unfinished lease %s", path)
		return os.Remove(path)
	}
	logf("removing the lab of prefix %s (directory %s) that process %d left behind", rec.Prefix, rec.Dir, rec.PID)
	if err := Cleanup(rec.Prefix, rec.Dir); err != nil {
		return fmt.Errorf("realnode: removing the lab %s that process %d left behind: %w", rec.Prefix, rec.PID, err)
	}
	return nil // Cleanup removed the lease file
}
