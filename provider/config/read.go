package config

import "github.com/baremetal-ccm/baremetal-ccm/internal/boundedfile"

// MaxFileSize bounds the cloud config file: a ConfigMap holds at most 1 MiB.
const MaxFileSize = 1 << 20

// ReadFile returns the content of path, a regular file of at most limit
// bytes (symbolic links are followed, as a mounted ConfigMap or Secret
// needs). Anything else — a FIFO, a device, a directory, a larger file — is
// an error that says so, and no more than limit+1 bytes are ever read.
func ReadFile(path string, limit int64) ([]byte, error) {
	return boundedfile.Read(path, limit)
}
