package lab

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// A directory the user owns, as $HOME is: files the lab did not write.
func foreignDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "home")
	if err := os.MkdirAll(filepath.Join(dir, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".ssh", "id_ed25519"), []byte("key"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A directory an earlier lab made: with the marker and the lab's files.
func labDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "lab")
	if err := ClaimDir(dir); err != nil {
		t.Fatal(err)
	}
	if err := WriteState(dir, State{Prefix: "bmlabunit", Slot: 6}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func emptyDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "empty")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func aFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(p, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func missingDir(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "a", "b")
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func TestClaimDir(t *testing.T) {
	for _, tc := range []struct {
		name    string
		dir     func(*testing.T) string
		refused bool
	}{
		{name: "missing directory is created", dir: missingDir},
		{name: "empty directory is adopted", dir: emptyDir},
		{name: "an earlier lab's directory is reused", dir: labDir},
		{name: "a directory with files and no marker is refused", dir: foreignDir, refused: true},
		{name: "a file is refused", dir: aFile, refused: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.dir(t)
			err := ClaimDir(dir)
			if tc.refused {
				if !errors.Is(err, ErrNotLabDir) {
					t.Fatalf("ClaimDir(%s) = %v, want an error wrapping ErrNotLabDir", dir, err)
				}
				if exists(filepath.Join(dir, MarkerName)) {
					t.Errorf("ClaimDir wrote its marker into a refused path")
				}
				return
			}
			if err != nil {
				t.Fatalf("ClaimDir(%s): %v", dir, err)
			}
			if !exists(filepath.Join(dir, MarkerName)) {
				t.Errorf("%s holds no %s after ClaimDir", dir, MarkerName)
			}
		})
	}
}

func TestRemoveDir(t *testing.T) {
	for _, tc := range []struct {
		name string
		// prepare returns the directory and what must exist afterwards.
		prepare func(*testing.T) (dir string, kept []string)
		refused bool
		gone    bool // the directory itself is removed
	}{
		{name: "a directory the lab created is removed", gone: true,
			prepare: func(t *testing.T) (string, []string) { return labDir(t), nil }},
		{name: "an adopted empty directory is emptied and kept",
			prepare: func(t *testing.T) (string, []string) {
				dir := emptyDir(t)
				if err := ClaimDir(dir); err != nil {
					t.Fatal(err)
				}
				if err := WriteState(dir, State{Prefix: "bmlabunit"}); err != nil {
					t.Fatal(err)
				}
				return dir, []string{dir}
			}},
		{name: "a home directory is refused and left as it was", refused: true,
			prepare: func(t *testing.T) (string, []string) {
				dir := foreignDir(t)
				return dir, []string{filepath.Join(dir, ".ssh", "id_ed25519")}
			}},
		{name: "an empty directory without marker is left alone",
			prepare: func(t *testing.T) (string, []string) { d := emptyDir(t); return d, []string{d} }},
		{name: "a missing directory is nothing to do", gone: true,
			prepare: func(t *testing.T) (string, []string) { return missingDir(t), nil }},
		{name: "a file is refused", refused: true,
			prepare: func(t *testing.T) (string, []string) { f := aFile(t); return f, []string{f} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, kept := tc.prepare(t)
			err := RemoveDir(dir)
			if tc.refused != errors.Is(err, ErrNotLabDir) {
				t.Fatalf("RemoveDir(%s) = %v, refusal wanted: %v", dir, err, tc.refused)
			}
			if !tc.refused && err != nil {
				t.Fatalf("RemoveDir(%s): %v", dir, err)
			}
			for _, p := range kept {
				if !exists(p) {
					t.Errorf("%s was removed", p)
				}
			}
			if tc.gone == exists(dir) {
				t.Errorf("%s exists: %v, want %v", dir, !tc.gone, !tc.gone)
			}
			if !tc.refused && exists(dir) {
				if ents, _ := os.ReadDir(dir); len(ents) != 0 {
					t.Errorf("%s keeps %d entries after RemoveDir", dir, len(ents))
				}
			}
		})
	}
}

// Cleanup (hack/lab up and down, Lab.Down) refuses a directory that is
// not the lab's before touching anything: $BMCCM_LAB_DIR=$HOME must not
// remove the home directory, nor signal a pid named in a state.json found
// there. Prefix and slot (outside 0..5) name no lab, so that even code
// without the check touches nothing of a lab running on the machine.
func TestCleanupRefusesForeignDir(t *testing.T) {
	dir := foreignDir(t)
	if err := WriteState(dir, State{Prefix: "bmlabunit", PIDs: []int{os.Getpid()}}); err != nil {
		t.Fatal(err)
	}
	err := Cleanup("bmlabunit", dir, 6)
	if !errors.Is(err, ErrNotLabDir) {
		t.Fatalf("Cleanup = %v, want an error wrapping ErrNotLabDir", err)
	}
	for _, p := range []string{filepath.Join(dir, ".ssh", "id_ed25519"), filepath.Join(dir, "state.json")} {
		if !exists(p) {
			t.Errorf("%s was removed", p)
		}
	}
}

// Stop (hack/lab down) refuses a foreign directory and leaves the log
// file beside it alone.
func TestStopRefusesForeignDir(t *testing.T) {
	dir := foreignDir(t)
	if err := os.WriteFile(dir+".log", []byte("the user's"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := Stop(Options{Dir: dir, Prefix: "bmlabunit", Slot: 6})
	if !errors.Is(err, ErrNotLabDir) {
		t.Fatalf("Stop = %v, want an error wrapping ErrNotLabDir", err)
	}
	for _, p := range []string{filepath.Join(dir, ".ssh", "id_ed25519"), dir + ".log"} {
		if !exists(p) {
			t.Errorf("%s was removed", p)
		}
	}
}
