// Package localimage builds the project's own small images (Go programs
// under images/) with no builder or registry, and loads them into kind.
package localimage

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	kindcluster "sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"

	"github.com/stateful-conformance/stateful-conformance/pkg/buildcache"
	"github.com/stateful-conformance/stateful-conformance/pkg/gobuild"
	"github.com/stateful-conformance/stateful-conformance/pkg/ociimage"
)

// Repository prefixes the project's image names.
const Repository = "stateful-conformance"

// Image is a built image: its reference and a docker-archive holding it.
type Image struct {
	Ref     string
	Archive string
}

// Build compiles images/<name> (a main package of this module) into an image
// whose tag is the hash of its sources, so a changed program gets a new tag
// and an unchanged one is not rebuilt.
func Build(ctx context.Context, repoRoot string, cache *buildcache.Cache, name string, log io.Writer) (Image, error) {
	spec := gobuild.Spec{
		Name:      name,
		ModuleDir: repoRoot,
		Packages:  []string{"./images/" + name},
		LDFlags:   "-s -w",
		Sources:   []string{filepath.Join(repoRoot, "images", name)},
	}
	key, err := gobuild.Key(ctx, spec)
	if err != nil {
		return Image{}, err
	}
	img := Image{Ref: fmt.Sprintf("%s/%s:%s", Repository, name, key[:12])}
	dir, err := cache.Ensure("images/"+name, key, func(out string) error {
		bin, err := gobuild.Build(ctx, cache, spec, log)
		if err != nil {
			return err
		}
		layer, err := ociimage.Layer([]ociimage.File{{Source: filepath.Join(bin, name), Path: "/" + name, Mode: 0o755}})
		if err != nil {
			return err
		}
		image, err := ociimage.Image(v1.Config{Entrypoint: []string{"/" + name}, User: "65532:65532"}, layer)
		if err != nil {
			return err
		}
		return ociimage.WriteArchive(filepath.Join(out, "image.tar"), map[string]v1.Image{img.Ref: image})
	})
	if err != nil {
		return Image{}, fmt.Errorf("image %s: %w", name, err)
	}
	_ = cache.Prune("images/"+name, key)
	img.Archive = filepath.Join(dir, "image.tar")
	return img, nil
}

// LoadIntoKind imports img into the containerd of every node of kind
// cluster clusterName (what "kind load image-archive" does).
func LoadIntoKind(clusterName string, img Image) error {
	provider := kindcluster.NewProvider(kindcluster.ProviderWithDocker())
	nodes, err := provider.ListInternalNodes(clusterName)
	if err != nil {
		return err
	}
	if len(nodes) == 0 {
		return fmt.Errorf("kind cluster %q has no nodes (does it exist? kind get clusters)", clusterName)
	}
	for _, node := range nodes {
		f, err := os.Open(img.Archive)
		if err != nil {
			return err
		}
		err = nodeutils.LoadImageArchive(node, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("loading %s into node %s: %w", img.Ref, node, err)
		}
	}
	return nil
}
