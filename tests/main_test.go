// Package tests is the end-to-end suite: e2e-framework features run against
// a real cluster. With no --kubeconfig it creates the kind cluster from
// kind-config.yaml (building images from source when no registry answers)
// and deletes it afterwards unless --keep-cluster is set.
//
//	go test ./tests -args --images=source --keep-cluster
//	go test ./tests -args --kubeconfig=$HOME/.kube/config --cluster-name=mine
package tests

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/e2e-framework/pkg/env"
	"sigs.k8s.io/e2e-framework/pkg/envconf"

	"github.com/stateful-conformance/stateful-conformance/pkg/addons"
	"github.com/stateful-conformance/stateful-conformance/pkg/buildcache"
	"github.com/stateful-conformance/stateful-conformance/pkg/cluster"
	"github.com/stateful-conformance/stateful-conformance/pkg/lab"
	"github.com/stateful-conformance/stateful-conformance/pkg/labcheck"
	"github.com/stateful-conformance/stateful-conformance/pkg/localimage"
	"github.com/stateful-conformance/stateful-conformance/pkg/manifest"
	"github.com/stateful-conformance/stateful-conformance/pkg/verdict"
)

// repoRoot is the checkout; go test runs in tests/.
const repoRoot = ".."

var (
	testenv env.Environment

	images      = flag.String("images", envOr("IMAGES", string(cluster.Auto)), "where images come from: auto, source or upstream [IMAGES]")
	kindConfig  = flag.String("kind-config", envOr("KIND_CONFIG", filepath.Join(repoRoot, "kind-config.yaml")), "kind cluster config [KIND_CONFIG]")
	clusterName = flag.String("cluster-name", envOr("CLUSTER_NAME", cluster.DefaultName), "kind cluster name [CLUSTER_NAME]")
	keepCluster = flag.Bool("keep-cluster", envBool("KEEP_CLUSTER"), "keep the kind cluster the suite created [KEEP_CLUSTER]")
	labDir      = flag.String("lab-dir", envOr("LAB_DIR", filepath.Join(repoRoot, "manifests/lab")), "the lab's manifests to certify [LAB_DIR]")
	probeRef    = flag.String("probe-image", os.Getenv("PROBE_IMAGE"), "probe image the cluster can pull, for a --kubeconfig cluster that is not kind [PROBE_IMAGE]")
	reportDir   = flag.String("report-dir", envOr("REPORT_DIR", filepath.Join(repoRoot, "_artifacts")), "where the run's verdicts are written (results.json) [REPORT_DIR]")
	labWait     = flag.Duration("lab-timeout", 2*time.Minute, "how long the lab may take to run before the features go on without it")
)

// results are the behaviour features' verdicts, written to --report-dir.
var results *verdict.Recorder

// suite is what the setup learned, for the features.
var suite struct {
	// kindCluster names the kind cluster under test, "" when the cluster is
	// not one (node-level checks are then skipped, and say so).
	kindCluster string
	// source is true when every image came from source (no pull may happen).
	source bool
	probe  string
	// lab names the lab's parts; its namespace comes from the manifests.
	lab labcheck.Names
	// dbReplicas and frontendReplicas are what the lab's manifests ask for.
	dbReplicas, frontendReplicas int32
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func envBool(name string) bool {
	b, _ := strconv.ParseBool(os.Getenv(name))
	return b
}

func TestMain(m *testing.M) {
	var err error
	testenv, err = env.NewFromFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(2)
	}
	cache, err := buildcache.Default()
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(2)
	}
	// A lab that cannot be read is bad input: say so before any cluster work.
	if err := readLab(*labDir); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(2)
	}
	results = verdict.NewRecorder(*labDir)
	testenv.Finish(writeReport)
	if testenv.EnvConf().KubeconfigFile() == "" {
		testenv.Setup(createCluster(cache))
		if !*keepCluster {
			testenv.Finish(func(ctx context.Context, cfg *envconf.Config) (context.Context, error) {
				return ctx, cluster.Down(ctx, cache, *clusterName, os.Stderr)
			})
		}
	} else {
		testenv.Setup(useCluster)
	}
	testenv.Setup(loadProbe(cache))
	testenv.Setup(installAddons(cache))
	testenv.Setup(deployLab(cache))
	if testenv.EnvConf().KubeconfigFile() != "" && !*keepCluster {
		// On a cluster the suite did not make, take the lab away again.
		testenv.Finish(func(ctx context.Context, cfg *envconf.Config) (context.Context, error) {
			return ctx, lab.Remove(ctx, labOptions(cache, cfg))
		})
	}
	os.Exit(testenv.Run(m))
}

func fail(err error) error {
	// e2e-framework logs setup errors at klog level; say it plainly too.
	fmt.Fprintln(os.Stderr, "error:", err)
	return err
}

func createCluster(cache *buildcache.Cache) func(context.Context, *envconf.Config) (context.Context, error) {
	return func(ctx context.Context, cfg *envconf.Config) (context.Context, error) {
		c, err := cluster.Up(ctx, cluster.Options{
			Name: *clusterName, ConfigPath: *kindConfig, Images: *images,
			RepoRoot: repoRoot, Cache: cache, Log: os.Stderr,
		})
		if err != nil {
			return ctx, fail(err)
		}
		cfg.WithKubeconfigFile(c.Kubeconfig)
		suite.kindCluster = c.Name
		suite.source = c.Source == cluster.Source
		return ctx, nil
	}
}

// useCluster learns whether a --kubeconfig cluster is the kind cluster
// --cluster-name (kind names its contexts kind-<name>).
func useCluster(ctx context.Context, cfg *envconf.Config) (context.Context, error) {
	raw, err := clientcmd.LoadFromFile(cfg.KubeconfigFile())
	if err != nil {
		return ctx, fail(fmt.Errorf("--kubeconfig %s: %w", cfg.KubeconfigFile(), err))
	}
	if raw.CurrentContext == "kind-"+*clusterName {
		if source, err := cluster.RunsSourceImages(ctx, *clusterName); err == nil {
			suite.kindCluster = *clusterName
			suite.source = source
		}
	}
	return ctx, nil
}

// loadProbe builds the probe image and loads it into the kind cluster, or
// uses --probe-image on another cluster.
func loadProbe(cache *buildcache.Cache) func(context.Context, *envconf.Config) (context.Context, error) {
	return func(ctx context.Context, cfg *envconf.Config) (context.Context, error) {
		if suite.kindCluster == "" {
			if *probeRef == "" {
				return ctx, fail(fmt.Errorf("the cluster of --kubeconfig is not the kind cluster %q, so the probe image cannot be loaded into it: push `go run ./cmd/stateful-conformance image probe` to a registry it pulls from and pass --probe-image (or --cluster-name for another kind cluster)", *clusterName))
			}
			suite.probe = *probeRef
			return ctx, nil
		}
		img, err := localimage.Build(ctx, repoRoot, cache, localimage.Program{Name: "probe"}, os.Stderr)
		if err != nil {
			return ctx, fail(err)
		}
		if err := localimage.LoadIntoKind(suite.kindCluster, img); err != nil {
			return ctx, fail(err)
		}
		suite.probe = img.Ref
		return ctx, nil
	}
}

// installAddons installs what the lab needs: the CSI hostpath storage and
// the ingress controller.
func installAddons(cache *buildcache.Cache) func(context.Context, *envconf.Config) (context.Context, error) {
	return func(ctx context.Context, cfg *envconf.Config) (context.Context, error) {
		o := addons.Options{
			RepoRoot: repoRoot, Cache: cache, Config: cfg.Client().RESTConfig(),
			KindCluster: suite.kindCluster, Source: suite.source, Log: os.Stderr,
		}
		if err := addons.InstallCSIHostpath(ctx, o); err != nil {
			return ctx, fail(err)
		}
		if err := addons.InstallIngress(ctx, o); err != nil {
			return ctx, fail(err)
		}
		return ctx, nil
	}
}

func labOptions(cache *buildcache.Cache, cfg *envconf.Config) lab.Options {
	return lab.Options{Dir: *labDir, RepoRoot: repoRoot, Cache: cache, Config: cfg.Client().RESTConfig(),
		KindCluster: suite.kindCluster, Log: os.Stderr}
}

// deployLab deploys the lab under test, fresh (an earlier lab's namespace
// is removed first), and waits a bounded time until it runs. A lab that
// does not run is not a setup error: what is wrong is recorded and printed,
// and every feature still gives its own verdict.
func deployLab(cache *buildcache.Cache) func(context.Context, *envconf.Config) (context.Context, error) {
	return func(ctx context.Context, cfg *envconf.Config) (context.Context, error) {
		o := labOptions(cache, cfg)
		o.Fresh, o.Timeout = true, *labWait
		if err := lab.Deploy(ctx, o); err != nil {
			results.LabProblem(err.Error())
			fmt.Fprintf(os.Stderr, "• the lab from %s does not fully run: %v\n  the features go on and each gives its verdict\n", *labDir, err)
		}
		return ctx, nil
	}
}

// readLab learns the lab's namespace and replicas from its manifests.
func readLab(dir string) error {
	objs, err := manifest.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("--lab-dir %s: %w", dir, err)
	}
	ns := ""
	suite.dbReplicas, suite.frontendReplicas = 1, 1
	for _, o := range objs {
		replicas, found, err := unstructured.NestedInt64(o.Object, "spec", "replicas")
		if err != nil {
			return fmt.Errorf("--lab-dir %s: %s %s: %w", dir, o.GetKind(), o.GetName(), err)
		}
		switch {
		case o.GetKind() == "StatefulSet" && o.GetName() == "mongo":
			ns = o.GetNamespace()
			if found {
				suite.dbReplicas = int32(replicas)
			}
		case o.GetKind() == "Deployment" && o.GetName() == "pacman" && found:
			suite.frontendReplicas = int32(replicas)
		case o.GetKind() == "Namespace" && ns == "":
			ns = o.GetName()
		}
	}
	if ns == "" {
		return fmt.Errorf("--lab-dir %s: no StatefulSet mongo and no Namespace in its manifests: is it the pacman lab?", dir)
	}
	suite.lab = labcheck.Lesson(ns)
	return nil
}

// writeReport writes the verdicts and prints them, one line per feature.
func writeReport(ctx context.Context, cfg *envconf.Config) (context.Context, error) {
	path, err := results.Write(*reportDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error: writing the report:", err)
		return ctx, err
	}
	rep := results.Report()
	fmt.Fprintf(os.Stderr, "\n• verdicts for the lab in %s (%s):\n", *labDir, path)
	for _, p := range rep.LabProblems {
		fmt.Fprintf(os.Stderr, "  lab problem: %s\n", p)
	}
	for _, f := range rep.Features {
		line := fmt.Sprintf("  %-7s %s", f.Status, f.Name)
		if m := f.Messages(); m != "" {
			line += ": " + m
		}
		fmt.Fprintln(os.Stderr, line)
	}
	return ctx, nil
}
