// Command stateful-conformance builds the suite's images and manages its kind
// cluster. The Makefile's targets call it; `go test ./tests` uses the same
// packages.
//
//	stateful-conformance node-image
//	stateful-conformance image NAME
//	stateful-conformance cluster up|down|kubeconfig
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/stateful-conformance/stateful-conformance/pkg/addons"
	"github.com/stateful-conformance/stateful-conformance/pkg/buildcache"
	"github.com/stateful-conformance/stateful-conformance/pkg/cluster"
	"github.com/stateful-conformance/stateful-conformance/pkg/lab"
	"github.com/stateful-conformance/stateful-conformance/pkg/localimage"
	"github.com/stateful-conformance/stateful-conformance/pkg/nodeimage"
)

const usage = `usage: stateful-conformance COMMAND [flags]

commands:
  node-image        build the kind node image from source (a no-op when up to date)
  image NAME        build images/NAME into an image archive; prints its reference and path
  cluster up        create the kind cluster, or reuse a healthy one
  cluster down      delete the kind cluster
  cluster kubeconfig  print the path of the cluster's kubeconfig
  addons            install the lab's prerequisites (CSI hostpath storage, ingress controller) into the cluster
  lab [DIR]         deploy the lab from DIR (default manifests/lab) and wait until it runs
  lab-down [DIR]    remove it
  mutation [CASE...]  run the suite against each broken lab of tests/testdata/broken (all
                    without CASE) on the kind cluster, and pass only if each is caught by
                    its expected feature with its expected cause; writes docs/mutation.md
                    when every case ran

flags (each also read from the environment variable in brackets):
  -name NAME        cluster name [CLUSTER_NAME] (default stateful-conformance)
  -kind-config F    kind cluster config [KIND_CONFIG] (default kind-config.yaml)
  -images SOURCE    auto, source or upstream [IMAGES] (default auto)
  -repo DIR         the project checkout (default .)
  -baseline FILE    mutation: the verdicts of a run on the correct lab (results.json);
                    without it, the correct lab is run first
build outputs are cached in $SC_CACHE_DIR (default ~/.cache/stateful-conformance).`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		var u usageError
		if errors.As(err, &u) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg + "\n" + usage }

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{"no command"}
	}
	cmd, args := args[0], args[1:]
	if cmd == "cluster" {
		if len(args) == 0 {
			return usageError{"cluster needs up, down or kubeconfig"}
		}
		cmd, args = "cluster "+args[0], args[1:]
	}
	switch cmd {
	case "node-image", "image", "cluster up", "cluster down", "cluster kubeconfig", "addons", "lab", "lab-down", "mutation":
	default:
		return usageError{fmt.Sprintf("unknown command %q", cmd)}
	}
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	name := fs.String("name", envOr("CLUSTER_NAME", cluster.DefaultName), "")
	kindConfig := fs.String("kind-config", envOr("KIND_CONFIG", "kind-config.yaml"), "")
	images := fs.String("images", envOr("IMAGES", string(cluster.Auto)), "")
	repo := fs.String("repo", ".", "")
	baseline := fs.String("baseline", "", "")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	root, err := filepath.Abs(*repo)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "images/kubernetes/go.mod")); err != nil {
		return fmt.Errorf("%s is not the stateful-conformance checkout (no images/kubernetes/go.mod): run from the checkout or pass -repo", root)
	}
	cache, err := buildcache.Default()
	if err != nil {
		return err
	}
	switch cmd {
	case "node-image":
		tag, err := nodeimage.Build(ctx, nodeimage.Options{RepoRoot: root, Cache: cache, Log: stderr, DebianMirror: os.Getenv("SC_DEBIAN_MIRROR")})
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, tag)
	case "image":
		if fs.NArg() != 1 {
			return usageError{"image needs the name of a folder under images/"}
		}
		img, err := localimage.Build(ctx, root, cache, localimage.Program{Name: fs.Arg(0)}, stderr)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, img.Ref, img.Archive)
	case "cluster up":
		c, err := cluster.Up(ctx, cluster.Options{Name: *name, ConfigPath: *kindConfig, Images: *images, RepoRoot: root, Cache: cache, Log: stderr})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "export KUBECONFIG=%s\n", c.Kubeconfig)
	case "cluster down":
		return cluster.Down(ctx, cache, *name, stderr)
	case "cluster kubeconfig":
		fmt.Fprintln(stdout, cluster.DefaultKubeconfig(cache, *name))
	case "lab", "lab-down":
		rc, err := restConfig(cache, *name)
		if err != nil {
			return err
		}
		dir := filepath.Join(root, "manifests/lab")
		if fs.NArg() > 0 {
			dir = fs.Arg(0)
		}
		o := lab.Options{Dir: dir, RepoRoot: root, Cache: cache, Config: rc, KindCluster: *name, Log: stderr}
		if cmd == "lab-down" {
			return lab.Remove(ctx, o)
		}
		return lab.Deploy(ctx, o)
	case "mutation":
		return runMutation(ctx, mutationOptions{Root: root, KindConfig: *kindConfig, Name: *name, Baseline: *baseline, Cases: fs.Args(), Log: stderr})
	case "addons":
		rc, err := restConfig(cache, *name)
		if err != nil {
			return err
		}
		// What the cluster runs decides, not IMAGES: a cluster built from
		// source gets its add-ons from source too.
		source, err := cluster.RunsSourceImages(ctx, *name)
		if err != nil {
			return err
		}
		o := addons.Options{RepoRoot: root, Cache: cache, Config: rc, KindCluster: *name, Source: source, Log: stderr}
		if err := addons.InstallCSIHostpath(ctx, o); err != nil {
			return err
		}
		return addons.InstallIngress(ctx, o)
	}
	return nil
}

// restConfig reaches the kind cluster name through the kubeconfig
// "cluster up" wrote.
func restConfig(cache *buildcache.Cache, name string) (*rest.Config, error) {
	kubeconfig := cluster.DefaultKubeconfig(cache, name)
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("no kubeconfig for cluster %q (%v): create it first with make cluster", name, err)
	}
	return rc, nil
}
