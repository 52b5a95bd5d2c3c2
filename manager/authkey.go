package manager

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
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
// its owner only.
func ReadAuthkeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
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
