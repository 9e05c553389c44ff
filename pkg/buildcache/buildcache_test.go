package buildcache

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestKeysFollowInputs(t *testing.T) {
	a := NewHasher().String("x", "ab").String("y", "c").Sum()
	assert.Equal(t, a, NewHasher().String("x", "ab").String("y", "c").Sum(), "same inputs, same key")
	assert.NotEqual(t, a, NewHasher().String("x", "a").String("y", "bc").Sum(), "labels keep values apart")

	tree := fstest.MapFS{"a/b": {Data: []byte("1"), Mode: 0o644}, "c": {Data: []byte("2"), Mode: 0o755}}
	key := func(fs fstest.MapFS) string {
		h := NewHasher()
		require.NoError(t, h.Tree("t", fs))
		return h.Sum()
	}
	base := key(tree)
	changed := fstest.MapFS{"a/b": {Data: []byte("1"), Mode: 0o644}, "c": {Data: []byte("3"), Mode: 0o755}}
	chmodded := fstest.MapFS{"a/b": {Data: []byte("1"), Mode: 0o644}, "c": {Data: []byte("2"), Mode: 0o644}}
	assert.NotEqual(t, base, key(changed), "content is an input")
	assert.NotEqual(t, base, key(chmodded), "mode is an input")
	assert.Equal(t, base, key(fstest.MapFS{"c": {Data: []byte("2"), Mode: 0o755}, "a/b": {Data: []byte("1"), Mode: 0o644}}))
}

func TestEnsureBuildsOnceAndAtomically(t *testing.T) {
	c := &Cache{Root: t.TempDir()}
	builds := 0
	build := func(dir string) error {
		builds++
		return os.WriteFile(filepath.Join(dir, "out"), []byte("x"), 0o644)
	}
	dir, err := c.Ensure("bin/x", "k1", build)
	require.NoError(t, err)
	_, err = c.Ensure("bin/x", "k1", build)
	require.NoError(t, err)
	assert.Equal(t, 1, builds, "a built key is not built again")
	assert.FileExists(t, filepath.Join(dir, "out"))

	_, err = c.Ensure("bin/x", "k2", func(dir string) error {
		os.WriteFile(filepath.Join(dir, "half"), nil, 0o644)
		return errors.New("compiler exploded")
	})
	require.ErrorContains(t, err, "compiler exploded")
	assert.False(t, c.Has("bin/x", "k2"), "a failed build leaves nothing under its key")
	entries, _ := os.ReadDir(filepath.Join(c.Root, "bin/x"))
	assert.Len(t, entries, 1, "and no temporary directory")

	require.NoError(t, c.Prune("bin/x", "k3"))
	assert.False(t, c.Has("bin/x", "k1"), "pruning keeps only the current key")
}

func TestDefaultHonoursEnv(t *testing.T) {
	t.Setenv(EnvDir, "/somewhere")
	c, err := Default()
	require.NoError(t, err)
	assert.Equal(t, "/somewhere", c.Root)
}
