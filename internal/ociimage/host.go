package ociimage

import (
	"context"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Adding host files: a dynamically linked program needs its shared
// libraries and the dynamic loader at the paths it was linked against. The
// host's layout is copied as it is: each symbolic link met on the way to a
// file (Debian's merged /usr: /lib -> usr/lib, /lib64 -> usr/lib64; a
// library's soname link) becomes the same link in the image, and the file
// at the end a copy, at its real path. The loader then finds the libraries
// where it finds them on the host, with no ld.so.cache in the image.

// AddHostBinary adds the host program hostPath to the image at imagePath
// (the host's own path when imagePath is ""), with its permission bits
// and, when it is dynamically linked, every shared library `ldd` lists for
// it, the dynamic loader included.
func (s *Spec) AddHostBinary(ctx context.Context, hostPath, imagePath string) error {
	if imagePath == "" {
		imagePath = hostPath
	}
	fi, err := os.Stat(hostPath)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", hostPath)
	}
	s.Files = append(s.Files, File{Path: imagePath, Source: hostPath})
	return s.addLibraries(ctx, hostPath)
}

// AddHostFile adds the host file hostPath at the same path in the image,
// with the symbolic links on the way to it (see above).
func (s *Spec) AddHostFile(hostPath string) error {
	real, err := s.mirror(hostPath, 0)
	if err != nil {
		return err
	}
	fi, err := os.Stat(real)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s (%s) is not a regular file", hostPath, real)
	}
	s.Files = append(s.Files, File{Path: real, Source: real})
	return nil
}

// AddHostTree adds the host directory dir and everything beneath it at the
// same paths (its symbolic links as they are), and the shared libraries of
// every ELF file in it: for plugins a program loads at run time (iptables'
// xtables extensions), which ldd of the program cannot list.
func (s *Spec) AddHostTree(ctx context.Context, dir string) error {
	real, err := s.mirror(dir, 0)
	if err != nil {
		return err
	}
	return filepath.WalkDir(real, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			s.Dirs = append(s.Dirs, Dir{Path: p, Mode: fi.Mode() & permBits})
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			s.Symlinks = append(s.Symlinks, Symlink{Path: p, Target: target})
		case fi.Mode().IsRegular():
			s.Files = append(s.Files, File{Path: p, Source: p})
			return s.addLibraries(ctx, p)
		default:
			return fmt.Errorf("%s: a %v, not a file, directory or symbolic link", p, fi.Mode().Type())
		}
		return nil
	})
}

// addLibraries adds the shared libraries of path, if it is a dynamically
// linked ELF file.
func (s *Spec) addLibraries(ctx context.Context, path string) error {
	dynamic, err := DynamicallyLinked(path)
	if err != nil || !dynamic {
		return err
	}
	libs, err := sharedLibraries(ctx, path)
	if err != nil {
		return err
	}
	for _, lib := range libs {
		if err := s.AddHostFile(lib); err != nil {
			return fmt.Errorf("library %s of %s: %w", lib, path, err)
		}
	}
	return nil
}

// DynamicallyLinked reports whether path is an ELF file that needs a
// dynamic loader or shared libraries; a file that is not ELF is not. An
// image without a libc needs programs that are not.
func DynamicallyLinked(path string) (bool, error) {
	raw, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer raw.Close()
	magic := make([]byte, len(elf.ELFMAG))
	if _, err := io.ReadFull(raw, magic); err != nil || string(magic) != elf.ELFMAG {
		return false, nil // shorter than the magic, or not ELF
	}
	f, err := elf.NewFile(raw)
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return true, nil
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	return len(libs) > 0, nil
}

// maxLinks bounds the symbolic links followed for one path (Linux's own
// limit is 40).
const maxLinks = 40

// mirror walks the host path p component by component. Each symbolic link
// met becomes a Symlink of the image, and the walk goes on at its target.
// It returns the real path p leads to on the host, which the caller adds
// (the links alone point at nothing).
func (s *Spec) mirror(p string, links int) (string, error) {
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("host path %q: must be absolute", p)
	}
	cur := "/"
	for _, part := range strings.Split(filepath.Clean(p)[1:], "/") {
		if part == "" {
			continue
		}
		next := filepath.Join(cur, part)
		fi, err := os.Lstat(next)
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > maxLinks {
			return "", fmt.Errorf("host path %s: more than %d symbolic links", p, maxLinks)
		}
		target, err := os.Readlink(next)
		if err != nil {
			return "", err
		}
		s.Symlinks = append(s.Symlinks, Symlink{Path: next, Target: target})
		if !filepath.IsAbs(target) {
			target = filepath.Join(cur, target)
		}
		if cur, err = s.mirror(target, links); err != nil {
			return "", err
		}
	}
	return cur, nil
}
