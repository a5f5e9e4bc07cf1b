package bgp

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"syscall"
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

// maxPasswordFileRead is the most readPassword reads: the longest secret
// with a trailing CRLF, and one byte more to tell that it is too long.
const maxPasswordFileRead = maxMD5KeyLen + 2 + 1

// readPassword returns the TCP MD5 secret in file. A single trailing
// newline (as written by echo or many editors) is not part of the secret.
// Only a regular file is read (symbolic links, as in a mounted Secret, are
// followed), and at most maxPasswordFileRead bytes of it: the file is
// opened without blocking, so a FIFO cannot hang the caller, and its type
// is checked on the opened file, so it cannot change in between.
func readPassword(file string) (string, error) {
	f, err := os.OpenFile(file, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return "", fmt.Errorf("cannot read the password file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("cannot read the password file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("the password file is a %s, want a regular file", fileKind(fi.Mode()))
	}
	b, err := io.ReadAll(io.LimitReader(f, maxPasswordFileRead))
	if err != nil {
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

func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&os.ModeNamedPipe != 0:
		return "named pipe (FIFO)"
	case m&os.ModeSocket != 0:
		return "socket"
	case m&os.ModeDevice != 0:
		return "device"
	}
	return "special file"
}
