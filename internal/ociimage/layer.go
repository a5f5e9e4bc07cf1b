package ociimage

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"
)

// tarMode is the mode field of a tar header for permission bits m.
func tarMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

// writeLayer writes the layer's tar stream: entries in order, every time
// mtime, no user or group names (the image has its own /etc/passwd, or
// none).
func writeLayer(w io.Writer, entries []*entry, mtime time.Time) error {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		hdr := &tar.Header{
			Name:    e.name,
			Mode:    tarMode(e.mode),
			Uid:     e.uid,
			Gid:     e.gid,
			ModTime: mtime,
			Format:  tar.FormatPAX,
		}
		switch e.kind {
		case kindDir:
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
			if err := tw.WriteHeader(hdr); err != nil {
				return fmt.Errorf("directory /%s: %w", e.name, err)
			}
		case kindSymlink:
			hdr.Typeflag = tar.TypeSymlink
			hdr.Linkname = e.target
			if err := tw.WriteHeader(hdr); err != nil {
				return fmt.Errorf("symbolic link /%s: %w", e.name, err)
			}
		case kindFile:
			hdr.Typeflag = tar.TypeReg
			if e.data != nil {
				hdr.Size = int64(len(e.data))
				if e.mode == 0 {
					hdr.Mode = 0o644
				}
				if err := tw.WriteHeader(hdr); err != nil {
					return fmt.Errorf("file /%s: %w", e.name, err)
				}
				if _, err := tw.Write(e.data); err != nil {
					return fmt.Errorf("file /%s: %w", e.name, err)
				}
				continue
			}
			if err := writeHostFile(tw, hdr, e); err != nil {
				return fmt.Errorf("file /%s from %s: %w", e.name, e.source, err)
			}
		}
	}
	return tw.Close()
}

// writeHostFile writes the host file e.source as hdr: a regular file (a
// symbolic link on the host is followed), exactly the size it had when
// opened.
func writeHostFile(tw *tar.Writer, hdr *tar.Header, e *entry) error {
	f, err := os.Open(e.source)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("not a regular file (%v)", fi.Mode().Type())
	}
	hdr.Size = fi.Size()
	if e.mode == 0 {
		hdr.Mode = tarMode(fi.Mode())
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	n, err := io.Copy(tw, io.LimitReader(f, fi.Size()))
	if err != nil {
		return err
	}
	if n != fi.Size() {
		return fmt.Errorf("shrank while being read: %d of %d bytes", n, fi.Size())
	}
	return nil
}
