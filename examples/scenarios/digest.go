//go:build linux

package scenarios

import (
	"context"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-mp/mp"
)

type fileDigest struct {
	Path   string
	SHA512 string
}

// digestFile returns the SHA-512 of one file, read in the worker.
var digestFile = mp.Register("scenarios.digestFile", func(path string) (fileDigest, error) {
	f, err := os.Open(path)
	if err != nil {
		return fileDigest{}, err
	}
	defer f.Close()
	h := sha512.New()
	if _, err := io.Copy(h, f); err != nil {
		return fileDigest{}, err
	}
	return fileDigest{Path: path, SHA512: hex.EncodeToString(h.Sum(nil))}, nil
})

// Digest is the file digest map of Python's examples: the SHA-512 of
// every file under a directory, by ImapUnordered in chunks of 20 paths.
// The paths come from a lazy walk of the directory, read as the pool needs
// them; the digests come back as their chunks finish, in no particular
// order, so they are sorted by path to be printed. The directory is made
// for the occasion, with 50 known files; the digests are shown cut short,
// and the last line is the SHA-512 of what sha512sum would print for them:
//
//	hashed 50 files in chunks of 20
//	a/file-00.txt  621e5754b33223fc...
//	a/file-01.txt  ba8ee422730d25df...
//	...
//	b/c/file-48.txt  360b4b34fa63aafe...
//	b/c/file-49.txt  8f010497895d27be...
//	SHA-512 of the sorted list: 992af836573f9755...
func Digest(ctx context.Context, w io.Writer) error {
	dir, err := os.MkdirTemp("", "mp-digest-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	for i := range 50 {
		name := filepath.Join(dir, "a", fmt.Sprintf("file-%02d.txt", i))
		if i >= 40 {
			name = filepath.Join(dir, "b", "c", fmt.Sprintf("file-%02d.txt", i))
		}
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(name, []byte(strings.Repeat(fmt.Sprintf("line of file %d\n", i), i+1)), 0o644); err != nil {
			return err
		}
	}

	pool, err := mp.NewPool(mp.PoolOptions{Processes: 2})
	if err != nil {
		return err
	}
	defer stopPool(pool)
	var walkErr error
	paths := func(yield func(string) bool) {
		walkErr = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			if !yield(path) {
				return filepath.SkipAll
			}
			return nil
		})
	}
	var digests []fileDigest
	for d, err := range digestFile.ImapUnordered(ctx, pool, paths, 20) {
		if err != nil {
			return err
		}
		d.Path, _ = filepath.Rel(dir, d.Path)
		digests = append(digests, d)
	}
	if walkErr != nil {
		return walkErr
	}
	if err := closeAndJoin(ctx, pool); err != nil {
		return err
	}

	slices.SortFunc(digests, func(a, b fileDigest) int { return strings.Compare(a.Path, b.Path) })
	fmt.Fprintf(w, "hashed %d files in chunks of 20\n", len(digests))
	all := sha512.New()
	for i, d := range digests {
		if i < 2 || i >= len(digests)-2 {
			fmt.Fprintf(w, "%s  %s...\n", filepath.ToSlash(d.Path), d.SHA512[:16])
		} else if i == 2 {
			fmt.Fprintln(w, "...")
		}
		fmt.Fprintf(all, "%s  %s\n", d.SHA512, filepath.ToSlash(d.Path))
	}
	fmt.Fprintf(w, "SHA-512 of the sorted list: %s...\n", hex.EncodeToString(all.Sum(nil))[:16])
	return nil
}
