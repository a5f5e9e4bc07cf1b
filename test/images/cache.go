package images

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/baremetal-ccm/baremetal-ccm/internal/ociimage"
)

// inputsSuffix names the file beside an archive that records what it was
// built from: the reference and the Spec's InputDigest.
const inputsSuffix = ".inputs"

// writeCached writes the image of spec as a.Path named a.Ref, unless the
// archive there was built from the same inputs. Hashing the inputs reads
// every file once; building would also compress them.
func writeCached(a Archive, spec ociimage.Spec) error {
	digest, err := spec.InputDigest()
	if err != nil {
		return err
	}
	key := []byte(a.Ref + "\n" + digest + "\n")
	if old, err := os.ReadFile(a.Path + inputsSuffix); err == nil && bytes.Equal(old, key) {
		if fi, err := os.Stat(a.Path); err == nil && fi.Mode().IsRegular() {
			return nil
		}
	}
	// The record goes first: an archive without a matching record is
	// rebuilt, never trusted.
	if err := os.Remove(a.Path + inputsSuffix); err != nil && !os.IsNotExist(err) {
		return err
	}
	img, err := ociimage.Build(spec)
	if err != nil {
		return err
	}
	if err := ociimage.WriteArchive(a.Path, a.Ref, img); err != nil {
		return err
	}
	return writeFileAtomic(a.Path+inputsSuffix, key)
}

func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
