package ociimage

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
)

// formatVersion changes when Build or WriteArchive would write something
// else for the same Spec, so that InputDigest changes with it.
const formatVersion = "ociimage/1 gzip-bestspeed oci+docker-archive"

// InputDigest is a digest of everything Build reads for the Spec: each
// entry as asked for, the contents and permission bits of each host file,
// the config and the creation time. Equal digests mean Build would make
// the same image, so that a caller can reuse an archive it wrote before
// without compressing the layer again. Host files are read in full.
func (s *Spec) InputDigest() (string, error) {
	entries, err := s.entries()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d\x00", formatVersion, s.created().Unix())
	for _, e := range entries {
		fmt.Fprintf(h, "%d\x00%q\x00%o\x00%d\x00%d\x00%q\x00", e.kind, e.name, e.mode, e.uid, e.gid, e.target)
		switch {
		case e.data != nil:
			fmt.Fprintf(h, "data\x00%d\x00", len(e.data))
			h.Write(e.data)
		case e.source != "":
			if err := hashHostFile(h, e.source); err != nil {
				return "", fmt.Errorf("file /%s from %s: %w", e.name, e.source, err)
			}
		}
	}
	config, err := json.Marshal(s.Config)
	if err != nil {
		return "", err
	}
	h.Write(config)
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

func hashHostFile(h hash.Hash, p string) error {
	f, err := os.Open(p)
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
	fmt.Fprintf(h, "source\x00%o\x00%d\x00", tarMode(fi.Mode()), fi.Size())
	_, err = io.Copy(h, f)
	return err
}
