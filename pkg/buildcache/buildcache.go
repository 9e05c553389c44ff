// Package buildcache stores build outputs under keys derived from their inputs,
// so that an artifact is rebuilt only when something it was built from changes.
package buildcache

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// EnvDir names the environment variable that overrides the cache location.
const EnvDir = "SC_CACHE_DIR"

// Cache is a directory of build outputs, one directory per kind and key.
type Cache struct {
	Root string
}

// Default returns the cache in $SC_CACHE_DIR, else in the user's cache
// directory (~/.cache/stateful-conformance). It lives outside the work tree so
// that fresh clones on the same machine (CI) reuse it.
func Default() (*Cache, error) {
	if dir := os.Getenv(EnvDir); dir != "" {
		return &Cache{Root: dir}, nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return nil, fmt.Errorf("no cache directory: set %s: %w", EnvDir, err)
	}
	return &Cache{Root: filepath.Join(base, "stateful-conformance")}, nil
}

// Path is where the output of kind/key lives (whether or not it exists yet).
func (c *Cache) Path(kind, key string) string {
	return filepath.Join(c.Root, kind, key)
}

// Has reports whether kind/key has been built.
func (c *Cache) Has(kind, key string) bool {
	_, err := os.Stat(c.Path(kind, key))
	return err == nil
}

// Ensure returns the directory of kind/key, calling build to fill a fresh
// directory first if it does not exist yet. The output appears atomically: a
// build that fails or is interrupted leaves nothing under the key.
func (c *Cache) Ensure(kind, key string, build func(dir string) error) (string, error) {
	final := c.Path(kind, key)
	if _, err := os.Stat(final); err == nil {
		return final, nil
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(final), "."+key+".tmp-")
	if err != nil {
		return "", err
	}
	if err := build(tmp); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	return final, nil
}

// Prune removes every entry of kind except keep, so superseded builds do not
// pile up on disk.
func (c *Cache) Prune(kind, keep string) error {
	entries, err := os.ReadDir(filepath.Join(c.Root, kind))
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	for _, e := range entries {
		if e.Name() != keep {
			if err := os.RemoveAll(filepath.Join(c.Root, kind, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// Hasher accumulates the inputs of a build into a key.
type Hasher struct {
	h io.Writer
	s interface{ Sum([]byte) []byte }
}

// NewHasher starts a key.
func NewHasher() *Hasher {
	h := sha256.New()
	return &Hasher{h: h, s: h}
}

// String adds a labelled value; the label keeps "ab"+"c" apart from "a"+"bc".
func (k *Hasher) String(label, value string) *Hasher {
	k.bytes([]byte(label))
	k.bytes([]byte(value))
	return k
}

// File adds a file's content under its label.
func (k *Hasher) File(label, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	k.bytes([]byte(label))
	k.bytes(b)
	return nil
}

// Tree adds every regular file and symlink below root: relative path, mode and
// content, in a stable order.
func (k *Hasher) Tree(label string, fsys fs.FS) error {
	var paths []string
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(paths)
	k.bytes([]byte(label))
	for _, p := range paths {
		info, err := fs.Stat(fsys, p)
		if err != nil {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		k.bytes([]byte(p))
		k.bytes([]byte(info.Mode().Perm().String()))
		k.bytes(b)
	}
	return nil
}

// Sum returns the key: the hex SHA-256 of everything added.
func (k *Hasher) Sum() string {
	return hex.EncodeToString(k.s.Sum(nil))
}

func (k *Hasher) bytes(b []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(b)))
	k.h.Write(n[:])
	k.h.Write(b)
}
