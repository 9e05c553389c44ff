package csihostpath

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
)

// TestSanity runs csi-sanity, the CSI spec's conformance tests, against the
// plugin over its real gRPC socket, with real bind mounts. Cases for
// capabilities the plugin does not advertise (ListVolumes, GetCapacity,
// ControllerPublish, NodeStage, volume groups, ...) are skipped by
// csi-sanity itself; the list is in the test's output and in the README.
func TestSanity(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("csi-sanity publishes volumes with bind mounts, which need root")
	}
	dir := t.TempDir()
	d, err := New(Config{NodeID: "sanity-node", DataDir: filepath.Join(dir, "data"), Version: "test",
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	endpoint := filepath.Join(dir, "csi.sock")
	served := make(chan error, 1)
	go func() { served <- d.Serve(ctx, endpoint) }()

	cfg := sanity.NewTestConfig()
	cfg.Address = endpoint
	cfg.TargetPath = filepath.Join(dir, "target")
	cfg.StagingPath = filepath.Join(dir, "staging")
	cfg.TestVolumeSize = 1 << 20
	cfg.TestVolumeExpandSize = 2 << 20
	sanity.Test(t, cfg)
	cancel()
	if err := <-served; err != nil {
		t.Errorf("serving: %v", err)
	}
}
