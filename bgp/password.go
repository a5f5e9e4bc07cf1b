package bgp

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/baremetal-ccm/baremetal-ccm/internal/boundedfile"
)

func readPasswords(peers []Peer) (map[string]string, error) {
	out := map[string]string{}
	for _, p := range peers {
		if p.PasswordFile == "" {
			continue
		}
		pw, err := readPassword(p.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("peer %q: password file %s: %w", p.Name, p.PasswordFile, err)
		}
		out[p.Name] = pw
	}
	return out, nil
}

// maxPasswordFileSize is the longest password file: the longest secret
// with a trailing CRLF.
const maxPasswordFileSize = maxMD5KeyLen + 2

// readPassword returns the TCP MD5 secret in file. A single trailing
// newline (as written by echo or many editors) is not part of the secret.
// Only a regular file is read, and no more of it than a secret can take
// (boundedfile.Read): a FIFO cannot hang the caller, nor a huge file fill
// its memory.
func readPassword(file string) (string, error) {
	b, err := boundedfile.Read(file, maxPasswordFileSize)
	var nre *boundedfile.NotRegularError
	switch {
	case errors.As(err, &nre):
		return "", fmt.Errorf("the password file is a %s, want a regular file", nre.Kind)
	case errors.Is(err, boundedfile.ErrTooLarge):
		return "", fmt.Errorf("the password is longer than %d bytes, the most TCP MD5 allows", maxMD5KeyLen)
	case err != nil:
		return "", fmt.Errorf("cannot read the password file: %w", err)
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	switch {
	case len(b) == 0:
		return "", fmt.Errorf("the password file is empty")
	case len(b) > maxMD5KeyLen:
		return "", fmt.Errorf("the password is longer than %d bytes, the most TCP MD5 allows", maxMD5KeyLen)
	}
	return string(b), nil
}
