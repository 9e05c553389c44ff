// Package cluster creates, reuses and deletes the suite's kind cluster, with
// node images built from source or pulled from upstream.
package cluster

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/kind/pkg/apis/config/defaults"
	kindcluster "sigs.k8s.io/kind/pkg/cluster"
	kindcmd "sigs.k8s.io/kind/pkg/cmd"
	"sigs.k8s.io/yaml"

	"github.com/stateful-conformance/stateful-conformance/pkg/buildcache"
	"github.com/stateful-conformance/stateful-conformance/pkg/docker"
	"github.com/stateful-conformance/stateful-conformance/pkg/kube"
	"github.com/stateful-conformance/stateful-conformance/pkg/nodeimage"
	"github.com/stateful-conformance/stateful-conformance/pkg/preflight"
)

// DefaultName is the kind cluster's name unless told otherwise.
const DefaultName = "stateful-conformance"

// ImageSource says where the cluster's images come from.
type ImageSource string

const (
	// Auto picks Upstream when the upstream registry answers, else Source.
	Auto ImageSource = "auto"
	// Source builds every image here from source.
	Source ImageSource = "source"
	// Upstream pulls kindest/node and friends.
	Upstream ImageSource = "upstream"
)

// ParseImageSource checks an IMAGES value ("" means auto).
func ParseImageSource(s string) (ImageSource, error) {
	switch ImageSource(strings.ToLower(strings.TrimSpace(s))) {
	case "", Auto:
		return Auto, nil
	case Source:
		return Source, nil
	case Upstream:
		return Upstream, nil
	}
	return "", fmt.Errorf("unknown IMAGES value %q: use auto (the default), source or upstream", s)
}

// UpstreamRegistry is the registry the upstream node image comes from.
const UpstreamRegistry = "registry-1.docker.io"

// Resolve turns Auto into Source or Upstream and says why. Auto prefers an
// upstream node image already present locally, then asks whether the
// registry resolves and accepts a connection within a few seconds. Upstream
// chosen explicitly fails fast when the image is neither present nor
// reachable, instead of in kind's pull minutes later.
func Resolve(ctx context.Context, s ImageSource) (ImageSource, string, error) {
	if s == Source {
		return Source, "IMAGES=source", nil
	}
	if docker.ImageExists(ctx, defaults.Image) {
		return Upstream, fmt.Sprintf("IMAGES=%s and the upstream node image is present locally", s), nil
	}
	unreachable := registryUnreachable(ctx)
	switch {
	case s == Upstream && unreachable != nil:
		return "", "", fmt.Errorf("IMAGES=upstream but %s: use IMAGES=source (or auto) to build the images here", unreachable)
	case s == Upstream:
		return Upstream, fmt.Sprintf("IMAGES=upstream and %s answers", UpstreamRegistry), nil
	case unreachable != nil:
		return Source, fmt.Sprintf("IMAGES=auto and %s", unreachable), nil
	}
	return Upstream, fmt.Sprintf("IMAGES=auto and %s answers", UpstreamRegistry), nil
}

// registryUnreachable returns nil when the upstream registry resolves and
// accepts a TCP connection within 3 s, else why not.
func registryUnreachable(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, UpstreamRegistry)
	if err != nil {
		return fmt.Errorf("%s does not resolve (%v)", UpstreamRegistry, err)
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", net.JoinHostPort(addrs[0], "443"))
	if err != nil {
		return fmt.Errorf("%s does not answer (%v)", UpstreamRegistry, err)
	}
	conn.Close()
	return nil
}

// Options configure Up.
type Options struct {
	// Name of the kind cluster (DefaultName when empty).
	Name string
	// ConfigPath is the kind config file (kind-config.yaml).
	ConfigPath string
	// Images is the image source: auto, source or upstream.
	Images string
	// RepoRoot is the project's checkout (for the node image build).
	RepoRoot string
	Cache    *buildcache.Cache
	// Kubeconfig is where the cluster's kubeconfig is written (a file of its
	// own, so the user's ~/.kube/config is left alone); default
	// <cache>/clusters/<name>.kubeconfig.
	Kubeconfig string
	// Log receives progress.
	Log io.Writer
	// ReadyTimeout bounds the wait for the node and CoreDNS to be Ready.
	ReadyTimeout time.Duration
}

// Cluster is a running kind cluster.
type Cluster struct {
	Name       string
	Kubeconfig string
	Image      string
	Source     ImageSource
	// Created is false when an existing healthy cluster was reused.
	Created bool
}

func (o *Options) defaults() {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Kubeconfig == "" {
		o.Kubeconfig = DefaultKubeconfig(o.Cache, o.Name)
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 3 * time.Minute
	}
}

// DefaultKubeconfig is where Up writes the kubeconfig of cluster name.
func DefaultKubeconfig(cache *buildcache.Cache, name string) string {
	return filepath.Join(cache.Root, "clusters", name+".kubeconfig")
}

// Up creates the cluster, or reuses it when one of that name exists, runs
// the wanted node image and is healthy. Bad input fails before anything is
// created; a failed create leaves no containers behind.
func Up(ctx context.Context, o Options) (*Cluster, error) {
	o.defaults()
	source, err := ParseImageSource(o.Images)
	if err != nil {
		return nil, err
	}
	cfg, err := LoadConfig(o.ConfigPath)
	if err != nil {
		return nil, err
	}
	if err := ConfineToLoopback(o.ConfigPath, cfg); err != nil {
		return nil, err
	}
	if err := docker.Check(ctx); err != nil {
		return nil, err
	}
	root, err := docker.RootDir(ctx)
	if err != nil {
		return nil, err
	}
	if err := preflight.Disk("a kind cluster", 4, root); err != nil {
		return nil, err
	}
	source, why, err := Resolve(ctx, source)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Log, "• images: %s (%s)\n", source, why)

	var image string
	switch source {
	case Source:
		if err := CheckSourceImageFits(o.ConfigPath, cfg); err != nil {
			return nil, err
		}
		// A cold build checks for its own (larger) disk needs.
		image, err = nodeimage.Build(ctx, nodeimage.Options{RepoRoot: o.RepoRoot, Cache: o.Cache, Log: o.Log, DebianMirror: os.Getenv("SC_DEBIAN_MIRROR")})
		if err != nil {
			return nil, err
		}
		versions, err := nodeimage.ReadVersions(o.RepoRoot)
		if err != nil {
			return nil, err
		}
		// kubeadm v1.34 names CoreDNS v1.12.1, which the module proxy does not
		// serve; the node has the version built here, so kubeadm must ask for it.
		cfg.KubeadmConfigPatches = append(cfg.KubeadmConfigPatches,
			fmt.Sprintf("kind: ClusterConfiguration\ndns:\n  imageTag: %s\n", versions.CoreDNS))
	case Upstream:
		image = defaults.Image
		if cfg.Nodes[0].Image != "" {
			image = cfg.Nodes[0].Image
		}
	}

	provider := kindcluster.NewProvider(kindcluster.ProviderWithDocker(), kindcluster.ProviderWithLogger(kindcmd.NewLogger()))
	c := &Cluster{Name: o.Name, Kubeconfig: o.Kubeconfig, Image: image, Source: source}
	// A cluster made from another config (a port mapping added, say) is not
	// the one asked for: the config's hash is kept beside the kubeconfig.
	effective, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	configKey := buildcache.NewHasher().String("kind-config", string(effective)).Sum()
	reused, err := reuse(ctx, provider, o, image, configKey)
	if err != nil {
		return nil, err
	}
	if reused {
		fmt.Fprintf(o.Log, "• reusing healthy cluster %q (kubeconfig %s)\n", o.Name, o.Kubeconfig)
		return c, nil
	}
	if err := os.MkdirAll(filepath.Dir(o.Kubeconfig), 0o755); err != nil {
		return nil, err
	}
	start := time.Now()
	fmt.Fprintf(o.Log, "• creating cluster %q from %s\n", o.Name, image)
	// kind deletes the half-made cluster itself when create fails.
	err = provider.Create(o.Name,
		kindcluster.CreateWithV1Alpha4Config(cfg),
		kindcluster.CreateWithNodeImage(image),
		kindcluster.CreateWithKubeconfigPath(o.Kubeconfig),
		kindcluster.CreateWithDisplayUsage(false),
		kindcluster.CreateWithDisplaySalutation(false),
	)
	if err != nil {
		return nil, fmt.Errorf("creating kind cluster %q: %w", o.Name, err)
	}
	c.Created = true
	if err := os.WriteFile(o.Kubeconfig+".config-key", []byte(configKey), 0o600); err != nil {
		return nil, err
	}
	if err := waitHealthy(ctx, o.Kubeconfig, o.ReadyTimeout); err != nil {
		_ = provider.Delete(o.Name, o.Kubeconfig)
		return nil, fmt.Errorf("cluster %q did not become healthy within %s, deleted it: %w", o.Name, o.ReadyTimeout, err)
	}
	fmt.Fprintf(o.Log, "• cluster %q ready in %s (node Ready, CoreDNS Ready); kubeconfig: %s\n", o.Name, time.Since(start).Round(100*time.Millisecond), o.Kubeconfig)
	return c, nil
}

// reuse reports whether cluster o.Name exists, runs image and is healthy. A
// cluster of that name that is stale or unhealthy is deleted.
func reuse(ctx context.Context, provider *kindcluster.Provider, o Options, image, configKey string) (bool, error) {
	names, err := provider.List()
	if err != nil {
		return false, err
	}
	exists := false
	for _, n := range names {
		exists = exists || n == o.Name
	}
	if !exists {
		return false, nil
	}
	why := ""
	running, _ := docker.Run(ctx, "inspect", "--format", "{{.State.Running}} {{.Config.Image}}", o.Name+"-control-plane")
	madeFrom, _ := os.ReadFile(o.Kubeconfig + ".config-key")
	switch {
	case running != "true "+image:
		why = fmt.Sprintf("its node runs %q, want running %s", running, image)
	case string(madeFrom) != configKey:
		why = "it was made from another kind config"
	default:
		kubeconfig, err := provider.KubeConfig(o.Name, false)
		if err == nil {
			err = os.MkdirAll(filepath.Dir(o.Kubeconfig), 0o755)
		}
		if err == nil {
			err = os.WriteFile(o.Kubeconfig, []byte(kubeconfig), 0o600)
		}
		if err == nil {
			err = waitHealthy(ctx, o.Kubeconfig, 20*time.Second)
		}
		if err == nil {
			return true, nil
		}
		why = err.Error()
	}
	fmt.Fprintf(o.Log, "• cluster %q exists but cannot be reused (%s): recreating it\n", o.Name, why)
	return false, provider.Delete(o.Name, o.Kubeconfig)
}

// waitHealthy waits, on watches, until every node and CoreDNS are Ready.
func waitHealthy(ctx context.Context, kubeconfig string, timeout time.Duration) error {
	cs, err := Clientset(kubeconfig)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := kube.WaitForNodesReady(ctx, cs); err != nil {
		return fmt.Errorf("nodes: %w", err)
	}
	if err := kube.WaitForDeployment(ctx, cs, "kube-system", "coredns"); err != nil {
		return fmt.Errorf("CoreDNS: %w", err)
	}
	return nil
}

// Clientset connects to the cluster of kubeconfig.
func Clientset(kubeconfig string) (*kubernetes.Clientset, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	return kubernetes.NewForConfig(rc)
}

// Down deletes cluster name (DefaultName when empty) and its kubeconfig. A
// cluster that does not exist is not an error.
func Down(ctx context.Context, cache *buildcache.Cache, name string, log io.Writer) error {
	if name == "" {
		name = DefaultName
	}
	if err := docker.Check(ctx); err != nil {
		return err
	}
	provider := kindcluster.NewProvider(kindcluster.ProviderWithDocker(), kindcluster.ProviderWithLogger(kindcmd.NewLogger()))
	names, err := provider.List()
	if err != nil {
		return err
	}
	kubeconfig := DefaultKubeconfig(cache, name)
	for _, n := range names {
		if n == name {
			fmt.Fprintf(log, "• deleting cluster %q\n", name)
			if err := provider.Delete(name, kubeconfig); err != nil {
				return err
			}
			os.Remove(kubeconfig + ".config-key")
			return os.RemoveAll(kubeconfig)
		}
	}
	fmt.Fprintf(log, "• no cluster %q to delete\n", name)
	return os.RemoveAll(kubeconfig)
}

// RunsSourceImages reports whether kind cluster name runs a node image built
// here; its add-ons must then be built here too (nothing can be pulled).
func RunsSourceImages(ctx context.Context, name string) (bool, error) {
	nodes, err := Nodes(name)
	if err != nil {
		return false, err
	}
	if len(nodes) == 0 {
		return false, fmt.Errorf("kind cluster %q has no nodes: create it with make cluster", name)
	}
	image, err := docker.Run(ctx, "inspect", "--format", "{{.Config.Image}}", nodes[0])
	if err != nil {
		return false, err
	}
	return strings.HasPrefix(image, nodeimage.Repository+":"), nil
}

// Nodes lists the node container names of cluster name.
func Nodes(name string) ([]string, error) {
	provider := kindcluster.NewProvider(kindcluster.ProviderWithDocker())
	nodes, err := provider.ListNodes(name)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range nodes {
		out = append(out, n.String())
	}
	return out, nil
}
