package nodeimage

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stateful-conformance/stateful-conformance/pkg/buildcache"
)

func TestVersionsComeFromThePins(t *testing.T) {
	v, err := ReadVersions("../..")
	require.NoError(t, err)
	assert.Equal(t, "v1.34.4", v.Kubernetes)
	assert.Equal(t, "v3.6.5", v.Etcd)
	assert.Equal(t, "v1.14.3", v.CoreDNS)
	assert.Equal(t, "v0.30.0", v.Kind)
}

func TestKubernetesVersionFlags(t *testing.T) {
	flags := kubernetesLDFlags("v1.34.4")
	for _, want := range []string{
		"-X k8s.io/component-base/version.gitVersion=v1.34.4",
		"-X k8s.io/component-base/version.gitMinor=34",
		"-X k8s.io/client-go/pkg/version.gitVersion=v1.34.4",
		"-X k8s.io/client-go/pkg/version.gitTreeState=clean",
	} {
		assert.Contains(t, flags, want)
	}
	assert.Equal(t, flags, kubernetesLDFlags("v1.34.4"), "stable, so the key is")
}

// copyRepo copies what the plan reads into a scratch checkout.
func copyRepo(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	for _, p := range []string{"go.mod", "go.sum", "images"} {
		src := filepath.Join("../..", p)
		info, err := os.Stat(src)
		require.NoError(t, err)
		if info.IsDir() {
			require.NoError(t, copyTree(src, filepath.Join(dst, p), nil))
		} else {
			require.NoError(t, copyFile(src, filepath.Join(dst, p), 0))
		}
	}
	return dst
}

// The tag is a function of the inputs: the same sources give the same tag,
// and a change to any input of the image gives a new one.
func TestTagFollowsInputs(t *testing.T) {
	ctx := context.Background()
	repo := copyRepo(t)
	opts := Options{RepoRoot: repo, Cache: &buildcache.Cache{Root: t.TempDir()}}
	base, err := Tag(ctx, opts)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(base, Repository+":v1.34.4-"), base)
	again, err := Tag(ctx, opts)
	require.NoError(t, err)
	assert.Equal(t, base, again)

	for _, change := range []string{"images/node/setup.sh", "images/node/rootfs-packages", "images/kube-proxy/iptables-wrapper", "images/coredns/main.go", "images/etcd/go.sum"} {
		f := filepath.Join(repo, change)
		orig, err := os.ReadFile(f)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(f, append(append([]byte{}, orig...), "\n# changed\n"...), 0o644))
		changed, err := Tag(ctx, opts)
		require.NoError(t, err)
		assert.NotEqual(t, base, changed, "changing %s must change the tag", change)
		require.NoError(t, os.WriteFile(f, orig, 0o644))
	}
	// Files of the project that are not inputs of the image leave it alone.
	require.NoError(t, os.WriteFile(filepath.Join(repo, "README.md"), []byte("docs"), 0o644))
	same, err := Tag(ctx, opts)
	require.NoError(t, err)
	assert.Equal(t, base, same)
}
