// Package ociimage builds single-platform linux/amd64 container images from
// nothing: every file, directory and symbolic link of the image is named by
// the caller, there is no base image to pull. It writes them as one tar
// archive that `ctr images import`, crane and skopeo read (archive.go).
//
// The images are reproducible: the same Spec gives the same digests
// (sorted entries, fixed times and owners unless given).
package ociimage

import (
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"
	"time"
)

// Spec describes an image: its one layer and its configuration. Parent
// directories of every entry are added as root-owned 0755 directories
// unless Dirs names them.
type Spec struct {
	Files    []File
	Dirs     []Dir
	Symlinks []Symlink
	Config   Config
	// Created is the image's creation time and every entry's modification
	// time; zero means the Unix epoch, so that equal Specs give equal digests.
	Created time.Time
}

// File is a regular file of the image.
type File struct {
	// Path is the absolute path in the image.
	Path string
	// Source is the host file whose contents the image gets (a symbolic
	// link is followed), or
	Source string
	// Data holds the contents.
	Data []byte
	// Mode holds the permission bits (fs.ModePerm, setuid, setgid, sticky).
	// Zero means the host file's own bits for Source, 0644 for Data.
	Mode     fs.FileMode
	UID, GID int
}

// Dir is a directory of the image.
type Dir struct {
	Path string
	// Mode holds the permission bits; zero means 0755.
	Mode     fs.FileMode
	UID, GID int
}

// Symlink is a symbolic link of the image. Target is written as given
// (absolute or relative), it is resolved inside the image at run time.
type Symlink struct {
	Path, Target string
}

// Config is what the runtime uses to start the image's process.
type Config struct {
	Entrypoint []string
	Cmd        []string
	// Env holds NAME=value pairs; give PATH if the entrypoint or its
	// children find programs by name.
	Env []string
	// User is "uid", "uid:gid", "name" or "name:group" (names need
	// /etc/passwd and /etc/group in the image).
	User       string
	WorkingDir string
	Labels     map[string]string
}

// entryKind says what an entry of the layer is.
type entryKind int

const (
	kindDir entryKind = iota
	kindFile
	kindSymlink
)

func (k entryKind) String() string {
	switch k {
	case kindDir:
		return "directory"
	case kindFile:
		return "file"
	default:
		return "symbolic link"
	}
}

// entry is one member of the layer, its path relative to / ("usr/bin/x").
type entry struct {
	kind     entryKind
	name     string
	mode     fs.FileMode
	uid, gid int
	source   string // kindFile from the host
	data     []byte // kindFile from memory
	target   string // kindSymlink
}

// same reports whether two entries for one path ask for the same thing, so
// that adding a library twice (two binaries need it) is not an error.
func (e *entry) same(o *entry) bool {
	return e.kind == o.kind && e.mode == o.mode && e.uid == o.uid && e.gid == o.gid &&
		e.source == o.source && string(e.data) == string(o.data) && e.target == o.target
}

// imagePath checks an absolute path of the image and returns it relative to
// the root, cleaned: "/usr/bin/x" -> "usr/bin/x".
func imagePath(what, p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("%s path %q: must be absolute", what, p)
	}
	if strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("%s path %q: holds a NUL byte", what, p)
	}
	clean := path.Clean(p)
	if clean == "/" {
		return "", fmt.Errorf("%s path %q: is the image's root", what, p)
	}
	return clean[1:], nil
}

const permBits = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky

func checkMode(what, p string, m fs.FileMode) error {
	if m&^permBits != 0 {
		return fmt.Errorf("%s %q: mode %v holds more than permission bits (%v)", what, p, m, permBits)
	}
	return nil
}

func checkOwner(what, p string, uid, gid int) error {
	if uid < 0 || gid < 0 || uid > 1<<31-1 || gid > 1<<31-1 {
		return fmt.Errorf("%s %q: owner %d:%d out of range 0..2147483647", what, p, uid, gid)
	}
	return nil
}

// entries turns the Spec into the layer's members, sorted by path so that
// every directory comes before what it holds. It rejects what cannot be
// one image: a path asked for twice as different things, a file beneath a
// symbolic link or beneath a file.
func (s *Spec) entries() ([]*entry, error) {
	byName := map[string]*entry{}
	add := func(e *entry) error {
		if old, ok := byName[e.name]; ok {
			if old.same(e) {
				return nil
			}
			return fmt.Errorf("/%s is asked for as a %s and as a %s (or with different contents, mode or owner)", e.name, old.kind, e.kind)
		}
		byName[e.name] = e
		return nil
	}
	for _, d := range s.Dirs {
		name, err := imagePath("directory", d.Path)
		if err != nil {
			return nil, err
		}
		if err := checkMode("directory", d.Path, d.Mode); err != nil {
			return nil, err
		}
		if err := checkOwner("directory", d.Path, d.UID, d.GID); err != nil {
			return nil, err
		}
		mode := d.Mode
		if mode == 0 {
			mode = 0o755
		}
		if err := add(&entry{kind: kindDir, name: name, mode: mode, uid: d.UID, gid: d.GID}); err != nil {
			return nil, err
		}
	}
	for _, f := range s.Files {
		name, err := imagePath("file", f.Path)
		if err != nil {
			return nil, err
		}
		if (f.Source == "") == (f.Data == nil) {
			return nil, fmt.Errorf("file %q: give exactly one of Source (a host path) and Data", f.Path)
		}
		if err := checkMode("file", f.Path, f.Mode); err != nil {
			return nil, err
		}
		if err := checkOwner("file", f.Path, f.UID, f.GID); err != nil {
			return nil, err
		}
		if err := add(&entry{kind: kindFile, name: name, mode: f.Mode, uid: f.UID, gid: f.GID, source: f.Source, data: f.Data}); err != nil {
			return nil, err
		}
	}
	for _, l := range s.Symlinks {
		name, err := imagePath("symbolic link", l.Path)
		if err != nil {
			return nil, err
		}
		if l.Target == "" || strings.ContainsRune(l.Target, 0) {
			return nil, fmt.Errorf("symbolic link %q: target %q must be a non-empty path", l.Path, l.Target)
		}
		if err := add(&entry{kind: kindSymlink, name: name, mode: 0o777, target: l.Target}); err != nil {
			return nil, err
		}
	}
	// Parents: each must be a directory, named or implied.
	for _, name := range slices.Collect(maps.Keys(byName)) {
		for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
			if parent, ok := byName[dir]; ok {
				if parent.kind != kindDir {
					return nil, fmt.Errorf("/%s is beneath /%s, which is a %s in the image", name, dir, parent.kind)
				}
				continue
			}
			byName[dir] = &entry{kind: kindDir, name: dir, mode: 0o755}
		}
	}
	// Sorted by path, a directory comes before everything beneath it (its
	// path is their prefix).
	return slices.SortedFunc(maps.Values(byName), func(a, b *entry) int {
		return strings.Compare(a.name, b.name)
	}), nil
}
