//go:build linux

package manager

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// AuthkeyEnv is the environment variable that AuthkeyFromEnv reads (and
// `mp manager serve` with it): how programs that did not start a manager
// learn its key.
const AuthkeyEnv = "MP_AUTHKEY"

// ParseAuthkey turns the text form of an authkey into its bytes: text
// that starts with "hex:" is hexadecimal ("hex:3f2a..."), any other text
// is the key itself, byte for byte (as Python's authkey=b"..." would be).
// An empty key is an error.
func ParseAuthkey(s string) ([]byte, error) {
	var key []byte
	if h, ok := strings.CutPrefix(s, "hex:"); ok {
		var err error
		if key, err = hex.DecodeString(h); err != nil {
			return nil, fmt.Errorf("manager: bad hexadecimal authkey: %w", err)
		}
	} else {
		key = []byte(s)
	}
	if len(key) == 0 {
		return nil, errors.New("manager: empty authkey")
	}
	return key, nil
}

// AuthkeyFromEnv returns the key in the environment variable MP_AUTHKEY
// (see ParseAuthkey for its form), or nil if it is not set.
func AuthkeyFromEnv() ([]byte, error) {
	s, ok := os.LookupEnv(AuthkeyEnv)
	if !ok {
		return nil, nil
	}
	key, err := ParseAuthkey(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", AuthkeyEnv, err)
	}
	return key, nil
}

// ReadAuthkeyFile reads a key from a file: its content, without a final
// line break, in the form ParseAuthkey reads. Keep such a file readable by
// its owner only: as ssh does with its private keys, ReadAuthkeyFile
// warns on standard error (once per path) about a file that its group or
// others may read or write, and reads it all the same.
func ReadAuthkeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().Perm()&0o077 != 0 {
		warnExposedKey(path, fi.Mode().Perm())
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	key, err := ParseAuthkey(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

// warnings is where warnExposedKey writes (a variable for the tests).
var warnings io.Writer = os.Stderr

// warned holds the paths already warned about.
var warned sync.Map

func warnExposedKey(path string, perm os.FileMode) {
	if _, dup := warned.LoadOrStore(path, true); dup {
		return
	}
	fmt.Fprintf(warnings, "mp: WARNING: authkey file %s has mode %04o: its group or others can get at it; keep it readable by its owner only (chmod 600 %s)\n", path, uint32(perm), path)
}
