package lab

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// MarkerName is the file the lab writes into its directory. The lab runs
// as root and removes its directory on down: it removes only a directory
// that holds this file, so that a mistyped --dir or $BMCCM_LAB_DIR (say,
// a home directory) is refused instead of deleted.
const MarkerName = ".bmccm-lab"

// The marker's content says whether the lab created the directory (down
// removes it) or found it empty (down empties it and leaves it).
const (
	markerCreated = "baremetal-ccm lab directory: created by the lab\n"
	markerAdopted = "baremetal-ccm lab directory: found empty, emptied on down\n"
)

// ErrNotLabDir is returned for an existing directory that holds something
// but not the lab's marker file: the lab neither uses nor removes it.
var ErrNotLabDir = errors.New("not a lab directory")

// ClaimDir makes dir the lab's. A missing dir is created (with its
// parents) and marked as created by the lab; an existing empty directory
// is marked as found empty; a directory with the marker (an earlier lab's)
// is kept as it is. Anything else (a non-empty directory without the
// marker, a file) is refused with an error wrapping [ErrNotLabDir] and
// left untouched.
func ClaimDir(dir string) error {
	state, err := inspectDir(dir)
	if err != nil {
		return err
	}
	switch state {
	case dirOwned:
		return nil
	case dirMissing:
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("creating the lab directory: %w", err)
		}
		return writeMarker(dir, markerCreated)
	case dirEmpty:
		return writeMarker(dir, markerAdopted)
	default:
		return notLabDir(dir)
	}
}

// RemoveDir removes what the lab put into dir: dir itself if the lab
// created it, only its contents if the lab found it empty. A missing dir
// or an empty one without the marker is left alone (nothing of the lab's
// is there). A non-empty directory without the marker is refused with an
// error wrapping [ErrNotLabDir] and left untouched.
func RemoveDir(dir string) error {
	state, err := inspectDir(dir)
	if err != nil {
		return err
	}
	switch state {
	case dirMissing, dirEmpty:
		return nil
	case dirForeign:
		return notLabDir(dir)
	}
	marker, err := os.ReadFile(filepath.Join(dir, MarkerName))
	if err != nil {
		return fmt.Errorf("reading the lab marker: %w", err)
	}
	if string(marker) != markerAdopted {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("removing the lab directory: %w", err)
		}
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("emptying the lab directory: %w", err)
	}
	var errs []error
	// The marker last: an interrupted removal leaves a directory that is
	// still recognised as the lab's.
	for _, e := range entries {
		if e.Name() != MarkerName {
			errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("emptying the lab directory: %w", err)
	}
	return os.Remove(filepath.Join(dir, MarkerName))
}

// CheckDir returns nil if the lab may use and remove dir: it is missing,
// empty, or holds the marker. Otherwise it returns an error wrapping
// [ErrNotLabDir] that says why.
func CheckDir(dir string) error {
	state, err := inspectDir(dir)
	if err != nil {
		return err
	}
	if state == dirForeign {
		return notLabDir(dir)
	}
	return nil
}

// dirState is what the lab finds at its directory's path.
type dirState int

const (
	dirMissing dirState = iota
	dirEmpty            // a directory without entries
	dirOwned            // a directory with the marker
	dirForeign          // a directory with entries but no marker
)

// inspectDir classifies dir. A path that is not a directory is an error
// wrapping ErrNotLabDir.
func inspectDir(dir string) (dirState, error) {
	if strings.TrimSpace(dir) == "" {
		return 0, errors.New("no lab directory given; set --dir or $BMCCM_LAB_DIR")
	}
	fi, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return dirMissing, nil
	}
	if err != nil {
		return 0, fmt.Errorf("lab directory: %w", err)
	}
	if !fi.IsDir() {
		return 0, fmt.Errorf("refusing to use %s: it is not a directory: %w", dir, ErrNotLabDir)
	}
	if _, err := os.Lstat(filepath.Join(dir, MarkerName)); err == nil {
		return dirOwned, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("lab directory: %w", err)
	}
	f, err := os.Open(dir)
	if err != nil {
		return 0, fmt.Errorf("lab directory: %w", err)
	}
	defer f.Close()
	if _, err := f.Readdirnames(1); errors.Is(err, io.EOF) {
		return dirEmpty, nil
	} else if err != nil {
		return 0, fmt.Errorf("reading %s: %w", dir, err)
	}
	return dirForeign, nil
}

func writeMarker(dir, content string) error {
	if err := os.WriteFile(filepath.Join(dir, MarkerName), []byte(content), 0o644); err != nil {
		return fmt.Errorf("marking the lab directory: %w", err)
	}
	return nil
}

func notLabDir(dir string) error {
	return fmt.Errorf("refusing to use or remove %s: it holds files but no %s, so the lab did not create it; give a missing or empty directory (--dir or $BMCCM_LAB_DIR): %w",
		dir, MarkerName, ErrNotLabDir)
}
