// Package localimage builds the project's own images (Go programs, each a
// static binary in an otherwise empty image) with no builder or registry, and
// loads them into kind.
package localimage

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	kindcluster "sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"

	"github.com/stateful-conformance/stateful-conformance/pkg/buildcache"
	"github.com/stateful-conformance/stateful-conformance/pkg/gobuild"
	"github.com/stateful-conformance/stateful-conformance/pkg/ociimage"
)

// Repository prefixes the project's image names.
const Repository = "stateful-conformance"

// Program is a Go program built into an image of its own.
type Program struct {
	// Name is the image's name under Repository; the binary is /<Name>.
	Name string
	// Module is the folder of the module to build in, relative to the
	// checkout: "" for the project's own module, or a wrapper module under
	// images/ that pins an upstream program.
	Module string
	// Package is the main package (default ./images/<Name>).
	Package string
	// User runs the program (default 65532, nobody; "0" for root).
	User string
	// Version, when set, is linked into the variable VersionVar (default
	// main.version; the upstream sidecars report it, unset they say
	// "unknown").
	Version    string
	VersionVar string
}

// Image is a built image: its reference and a docker-archive holding it.
type Image struct {
	Ref     string
	Archive string
}

// Build compiles prog into an image whose tag is the hash of its inputs, so
// a changed program gets a new tag and an unchanged one is not rebuilt.
func Build(ctx context.Context, repoRoot string, cache *buildcache.Cache, prog Program, log io.Writer) (Image, error) {
	if prog.Package == "" {
		prog.Package = "./images/" + prog.Name
	}
	if prog.User == "" {
		prog.User = "65532:65532"
	}
	ldflags := "-s -w"
	if prog.Version != "" {
		if prog.VersionVar == "" {
			prog.VersionVar = "main.version"
		}
		ldflags += " -X " + prog.VersionVar + "=" + prog.Version
	}
	spec := gobuild.Spec{
		Name:      prog.Name,
		ModuleDir: filepath.Join(repoRoot, prog.Module),
		Packages:  []string{prog.Package},
		LDFlags:   ldflags,
		LocalDeps: prog.Module == "",
	}
	key, err := gobuild.Key(ctx, spec)
	if err != nil {
		return Image{}, err
	}
	key = buildcache.NewHasher().String("bin", key).String("user", prog.User).Sum()
	img := Image{Ref: fmt.Sprintf("%s/%s:%s", Repository, prog.Name, key[:12])}
	dir, err := cache.Ensure("images/"+prog.Name, key, func(out string) error {
		bin, err := gobuild.Build(ctx, cache, spec, log)
		if err != nil {
			return err
		}
		entries, err := os.ReadDir(bin)
		if err != nil || len(entries) != 1 {
			return fmt.Errorf("build of %s: want one binary in %s (%v)", prog.Name, bin, err)
		}
		layer, err := ociimage.Layer([]ociimage.File{{Source: filepath.Join(bin, entries[0].Name()), Path: "/" + prog.Name, Mode: 0o755}})
		if err != nil {
			return err
		}
		image, err := ociimage.Image(v1.Config{Entrypoint: []string{"/" + prog.Name}, User: prog.User}, layer)
		if err != nil {
			return err
		}
		return ociimage.WriteArchive(filepath.Join(out, "image.tar"), map[string]v1.Image{img.Ref: image})
	})
	if err != nil {
		return Image{}, fmt.Errorf("image %s: %w", prog.Name, err)
	}
	_ = cache.Prune("images/"+prog.Name, key)
	img.Archive = filepath.Join(dir, "image.tar")
	return img, nil
}

// BuildAll builds each program and loads it into kind cluster clusterName;
// it returns, for each key of progs, the reference of its image.
func BuildAll(ctx context.Context, repoRoot string, cache *buildcache.Cache, clusterName string, progs map[string]Program, log io.Writer) (map[string]string, error) {
	refs := map[string]string{}
	for name, prog := range progs {
		img, err := Build(ctx, repoRoot, cache, prog, log)
		if err != nil {
			return nil, err
		}
		if err := LoadIntoKind(clusterName, img); err != nil {
			return nil, err
		}
		refs[name] = img.Ref
	}
	return refs, nil
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
		// Loading re-imports the whole archive; a node that has the
		// content-addressed tag already has these exact bytes.
		var out bytes.Buffer
		if err := node.Command("ctr", "--namespace=k8s.io", "images", "ls", "-q", "name==docker.io/"+img.Ref).SetStdout(&out).Run(); err == nil && strings.TrimSpace(out.String()) != "" {
			continue
		}
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
