package ociimage

import (
	"archive/tar"
	"io"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestArchiveRoundTrip(t *testing.T) {
	layer, err := Layer([]File{
		{Data: []byte("#!/bin/sh\n"), Path: "/usr/local/bin/tool", Mode: 0o755},
		{Link: "/usr/local/bin/tool", Path: "/bin/alias"},
	})
	require.NoError(t, err)
	img, err := Image(v1.Config{Entrypoint: []string{"/usr/local/bin/tool"}, User: "65532"}, layer)
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "img.tar")
	require.NoError(t, WriteArchive(file, map[string]v1.Image{"example.test/tool:v1": img, "example.test/tool:v2": img}))

	for _, ref := range []string{"example.test/tool:v1", "example.test/tool:v2"} {
		tag, err := name.NewTag(ref)
		require.NoError(t, err)
		got, err := tarball.ImageFromPath(file, &tag)
		require.NoError(t, err, ref)
		cfg, err := got.ConfigFile()
		require.NoError(t, err)
		assert.Equal(t, []string{"/usr/local/bin/tool"}, cfg.Config.Entrypoint)
		assert.Equal(t, "65532", cfg.Config.User)
		layers, err := got.Layers()
		require.NoError(t, err)
		require.Len(t, layers, 1)
		rc, err := layers[0].Uncompressed()
		require.NoError(t, err)
		entries := map[string]*tar.Header{}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			require.NoError(t, err)
			entries[h.Name] = h
		}
		rc.Close()
		require.Contains(t, entries, "usr/local/bin/tool")
		assert.Equal(t, int64(0o755), entries["usr/local/bin/tool"].Mode)
		assert.Contains(t, entries, "usr/local/bin/", "parent directories are in the layer")
		assert.Equal(t, "/usr/local/bin/tool", entries["bin/alias"].Linkname)
	}
	d1, _ := layer.Digest()
	again, _ := Layer([]File{{Link: "/usr/local/bin/tool", Path: "/bin/alias"}, {Data: []byte("#!/bin/sh\n"), Path: "/usr/local/bin/tool", Mode: 0o755}})
	d2, _ := again.Digest()
	assert.Equal(t, d1, d2, "the same files give the same layer, in any order")
}
