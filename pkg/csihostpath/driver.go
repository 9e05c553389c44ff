// Package csihostpath is the project's hostpath CSI plugin: volumes are
// directories under a data directory on the node, snapshots are gzipped tar
// archives beside them. One process serves the Identity, Controller and Node
// services on one socket (the plugin runs on the node whose disk it uses),
// registers itself with the kubelet through the plugin registration API, and
// answers a health endpoint for its liveness probe.
package csihostpath

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DriverName is the plugin's CSI driver name (upstream's hostpath driver is
// hostpath.csi.k8s.io; this one is not it).
const DriverName = "hostpath.csi.stateful-conformance.dev"

// TopologyKey labels the node a volume lives on.
const TopologyKey = "topology." + DriverName + "/node"

// DefaultDataDir is where volumes and snapshots live on the node.
const DefaultDataDir = "/var/lib/csi-hostpath-data"

// Config configures a Driver.
type Config struct {
	// Name is the CSI driver name (DriverName by default).
	Name string
	// Version is reported by GetPluginInfo.
	Version string
	// NodeID names the node this plugin serves.
	NodeID string
	// DataDir holds volumes/, snapshots/ and state.json.
	DataDir string
	// MaxVolumesPerNode is reported by NodeGetInfo (0: no limit).
	MaxVolumesPerNode int64
	// Log receives one line per call that changes something.
	Log *slog.Logger
	// Fault breaks the plugin on purpose, for the suite's own tests that
	// prove its storage checks catch a broken driver: FaultPublishEmpty
	// publishes a fresh tmpfs instead of the volume (nothing persists),
	// FaultRestoreEmpty creates volumes from snapshots empty. Never set
	// otherwise.
	Fault string
}

// Faults the plugin can be started with (see Config.Fault).
const (
	FaultPublishEmpty = "publish-empty"
	FaultRestoreEmpty = "restore-empty"
)

// Driver implements the CSI Identity, Controller and Node services.
type Driver struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedControllerServer
	csi.UnimplementedNodeServer

	cfg Config
	// mu serialises every call: the plugin is small and calls are rare, and
	// state.json must describe one consistent moment.
	mu    sync.Mutex
	state *state
}

// New loads the plugin's state from cfg.DataDir, creating the directory.
func New(cfg Config) (*Driver, error) {
	if cfg.Name == "" {
		cfg.Name = DriverName
	}
	if cfg.DataDir == "" {
		cfg.DataDir = DefaultDataDir
	}
	if cfg.NodeID == "" {
		return nil, errors.New("csihostpath: a node ID is required (--node-id, usually the Kubernetes node name)")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	switch cfg.Fault {
	case "":
	case FaultPublishEmpty, FaultRestoreEmpty:
		cfg.Log.Warn("running with a fault injected, for testing the suite", "fault", cfg.Fault)
	default:
		return nil, fmt.Errorf("csihostpath: unknown fault %q (want %s or %s)", cfg.Fault, FaultPublishEmpty, FaultRestoreEmpty)
	}
	for _, d := range []string{cfg.DataDir, filepath.Join(cfg.DataDir, "volumes"), filepath.Join(cfg.DataDir, "snapshots")} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, fmt.Errorf("csihostpath: data directory: %w", err)
		}
	}
	s, err := loadState(filepath.Join(cfg.DataDir, "state.json"))
	if err != nil {
		return nil, fmt.Errorf("csihostpath: reading state: %w", err)
	}
	return &Driver{cfg: cfg, state: s}, nil
}

func (d *Driver) volumePath(id string) string { return filepath.Join(d.cfg.DataDir, "volumes", id) }
func (d *Driver) snapshotPath(id string) string {
	return filepath.Join(d.cfg.DataDir, "snapshots", id+".tar.gz")
}

// volume is the volume of id, or a NotFound error; d.mu must be held.
func (d *Driver) volume(id string) (*Volume, error) {
	v, ok := d.state.Volumes[id]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "volume %s not found", id)
	}
	return v, nil
}

func (d *Driver) save() error {
	if err := d.state.save(filepath.Join(d.cfg.DataDir, "state.json")); err != nil {
		return status.Errorf(codes.Internal, "saving state: %v", err)
	}
	return nil
}

func newID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// Serve serves the CSI services on the unix socket endpoint (a path or a
// unix:// URL) until ctx ends.
func (d *Driver) Serve(ctx context.Context, endpoint string) error {
	lis, err := listenUnix(endpoint)
	if err != nil {
		return err
	}
	srv := grpc.NewServer(grpc.UnaryInterceptor(d.logCalls))
	csi.RegisterIdentityServer(srv, d)
	csi.RegisterControllerServer(srv, d)
	csi.RegisterNodeServer(srv, d)
	return serveUntil(ctx, srv, lis)
}

// ServeHealth answers GET /healthz on addr with 200 while Probe succeeds.
func (d *Driver) ServeHealth(ctx context.Context, addr string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if _, err := d.Probe(r.Context(), &csi.ProbeRequest{}); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// logCalls logs each call that failed or changes state.
func (d *Driver) logCalls(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	method := info.FullMethod[strings.LastIndex(info.FullMethod, "/")+1:]
	quiet := strings.HasPrefix(method, "Get") || strings.HasPrefix(method, "List") || method == "Probe" || strings.HasSuffix(method, "Capabilities") || method == "NodeGetInfo" || method == "NodeGetVolumeStats"
	if err != nil {
		d.cfg.Log.Warn("csi call failed", "method", method, "error", err)
	} else if !quiet {
		d.cfg.Log.Info("csi call", "method", method)
	}
	return resp, err
}

func listenUnix(endpoint string) (net.Listener, error) {
	path := strings.TrimPrefix(endpoint, "unix://")
	if path == "" || strings.Contains(path, "://") {
		return nil, fmt.Errorf("endpoint %q: want a unix socket path or unix:// URL", endpoint)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	// A socket left by a previous run would make listen fail.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return net.Listen("unix", path)
}

func serveUntil(ctx context.Context, srv *grpc.Server, lis net.Listener) error {
	go func() {
		<-ctx.Done()
		srv.GracefulStop()
	}()
	return srv.Serve(lis)
}
