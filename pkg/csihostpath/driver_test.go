package csihostpath

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func newDriver(t *testing.T, dataDir string) *Driver {
	t.Helper()
	d, err := New(Config{NodeID: "node-a", DataDir: dataDir, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	return d
}

func rwo() []*csi.VolumeCapability {
	return []*csi.VolumeCapability{{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}}
}

func create(t *testing.T, d *Driver, name string, bytes int64, src *csi.VolumeContentSource) *csi.Volume {
	t.Helper()
	resp, err := d.CreateVolume(context.Background(), &csi.CreateVolumeRequest{
		Name: name, VolumeCapabilities: rwo(), CapacityRange: &csi.CapacityRange{RequiredBytes: bytes}, VolumeContentSource: src,
	})
	require.NoError(t, err)
	return resp.Volume
}

func code(err error) codes.Code { return status.Code(err) }

func TestCreateVolumeIsIdempotentAndTopologyAware(t *testing.T) {
	d := newDriver(t, t.TempDir())
	a := create(t, d, "pvc-1", 1<<20, nil)
	b := create(t, d, "pvc-1", 1<<20, nil)
	assert.Equal(t, a.VolumeId, b.VolumeId, "the same name gets the same volume")
	assert.Equal(t, int64(1<<20), a.CapacityBytes)
	assert.Equal(t, "node-a", a.AccessibleTopology[0].Segments[TopologyKey])
	_, err := d.CreateVolume(context.Background(), &csi.CreateVolumeRequest{Name: "pvc-1", VolumeCapabilities: rwo(), CapacityRange: &csi.CapacityRange{RequiredBytes: 2 << 20}})
	assert.Equal(t, codes.AlreadyExists, code(err), "a different size under the same name")
}

func TestBadRequestsGetClearErrors(t *testing.T) {
	d := newDriver(t, t.TempDir())
	ctx := context.Background()
	_, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "huge", VolumeCapabilities: rwo(), CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 60}})
	assert.Equal(t, codes.OutOfRange, code(err))
	assert.ErrorContains(t, err, "free on node node-a")

	rwx := []*csi.VolumeCapability{{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER},
	}}
	_, err = d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "shared", VolumeCapabilities: rwx})
	assert.Equal(t, codes.InvalidArgument, code(err))
	assert.ErrorContains(t, err, "MULTI_NODE_MULTI_WRITER is not supported")

	block := []*csi.VolumeCapability{{
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}}
	_, err = d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "raw", VolumeCapabilities: block})
	assert.ErrorContains(t, err, "block volumes are not supported")
}

// requireRoot skips tests that bind-mount.
func requireRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("publishing bind-mounts, which needs root")
	}
}

func TestDeletingAPublishedVolumeIsRefused(t *testing.T) {
	requireRoot(t)
	d := newDriver(t, t.TempDir())
	ctx := context.Background()
	v := create(t, d, "pvc-busy", 1<<20, nil)
	target := filepath.Join(t.TempDir(), "mnt")
	_, err := d.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: v.VolumeId, TargetPath: target, VolumeCapability: rwo()[0]})
	require.NoError(t, err)
	_, err = d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v.VolumeId})
	assert.Equal(t, codes.FailedPrecondition, code(err))
	assert.ErrorContains(t, err, "still published at "+target)
	_, err = d.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: v.VolumeId, TargetPath: target})
	require.NoError(t, err)
	_, err = d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v.VolumeId})
	require.NoError(t, err)
	assert.NoDirExists(t, d.volumePath(v.VolumeId), "the directory goes with the volume")
}

func TestPublishedDataPersistsAndReadOnlyIsHonoured(t *testing.T) {
	requireRoot(t)
	data := t.TempDir()
	d := newDriver(t, data)
	ctx := context.Background()
	v := create(t, d, "pvc-data", 1<<20, nil)
	rw := filepath.Join(t.TempDir(), "rw")
	_, err := d.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: v.VolumeId, TargetPath: rw, VolumeCapability: rwo()[0]})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(rw, "score"), []byte("9001"), 0o644))
	_, err = d.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: v.VolumeId, TargetPath: rw})
	require.NoError(t, err)

	// A restarted plugin knows the volume, and a new mount sees the file.
	d = newDriver(t, data)
	ro := filepath.Join(t.TempDir(), "ro")
	_, err = d.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: v.VolumeId, TargetPath: ro, VolumeCapability: rwo()[0], Readonly: true})
	require.NoError(t, err)
	defer d.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: v.VolumeId, TargetPath: ro})
	got, err := os.ReadFile(filepath.Join(ro, "score"))
	require.NoError(t, err)
	assert.Equal(t, "9001", string(got))
	assert.Error(t, os.WriteFile(filepath.Join(ro, "other"), []byte("x"), 0o644), "a read-only publish refuses writes")
}

func TestSnapshotRestoreAndCloneKeepTheBytes(t *testing.T) {
	d := newDriver(t, t.TempDir())
	ctx := context.Background()
	v := create(t, d, "pvc-src", 1<<20, nil)
	require.NoError(t, os.MkdirAll(filepath.Join(d.volumePath(v.VolumeId), "db"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(d.volumePath(v.VolumeId), "db", "highscore"), []byte("clyde 4200"), 0o640))

	snap, err := d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap-1", SourceVolumeId: v.VolumeId})
	require.NoError(t, err)
	assert.True(t, snap.Snapshot.ReadyToUse)
	// Writes after the snapshot are not in it.
	require.NoError(t, os.WriteFile(filepath.Join(d.volumePath(v.VolumeId), "db", "highscore"), []byte("changed"), 0o640))

	restored := create(t, d, "pvc-restored", 1<<20, &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snap.Snapshot.SnapshotId}}})
	got, err := os.ReadFile(filepath.Join(d.volumePath(restored.VolumeId), "db", "highscore"))
	require.NoError(t, err)
	assert.Equal(t, "clyde 4200", string(got))
	info, err := os.Stat(filepath.Join(d.volumePath(restored.VolumeId), "db", "highscore"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), info.Mode().Perm(), "modes survive the archive")

	clone := create(t, d, "pvc-clone", 1<<20, &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: v.VolumeId}}})
	got, err = os.ReadFile(filepath.Join(d.volumePath(clone.VolumeId), "db", "highscore"))
	require.NoError(t, err)
	assert.Equal(t, "changed", string(got))

	_, err = d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "too-small", VolumeCapabilities: rwo(), CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 10},
		VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snap.Snapshot.SnapshotId}}}})
	assert.Equal(t, codes.OutOfRange, code(err), "a restore smaller than its snapshot")
}

func TestExpandVolume(t *testing.T) {
	d := newDriver(t, t.TempDir())
	ctx := context.Background()
	v := create(t, d, "pvc-grow", 1<<30, nil)
	resp, err := d.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: v.VolumeId, CapacityRange: &csi.CapacityRange{RequiredBytes: 2 << 30}})
	require.NoError(t, err)
	assert.Equal(t, int64(2<<30), resp.CapacityBytes)
	node, err := d.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: v.VolumeId, VolumePath: d.volumePath(v.VolumeId)})
	require.NoError(t, err)
	assert.Equal(t, int64(2<<30), node.CapacityBytes)
	stats, err := d.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: v.VolumeId, VolumePath: d.volumePath(v.VolumeId)})
	require.NoError(t, err)
	assert.Equal(t, int64(2<<30), stats.Usage[0].Total)
}

func TestFaultsBreakWhatTheySay(t *testing.T) {
	_, err := New(Config{NodeID: "n", DataDir: t.TempDir(), Fault: "gremlins", Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	assert.ErrorContains(t, err, `unknown fault "gremlins"`)

	d, err := New(Config{NodeID: "n", DataDir: t.TempDir(), Fault: FaultRestoreEmpty, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	v := create(t, d, "src", 1<<20, nil)
	require.NoError(t, os.WriteFile(filepath.Join(d.volumePath(v.VolumeId), "f"), []byte("x"), 0o644))
	snap, err := d.CreateSnapshot(context.Background(), &csi.CreateSnapshotRequest{Name: "s", SourceVolumeId: v.VolumeId})
	require.NoError(t, err)
	restored := create(t, d, "dst", 1<<20, &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snap.Snapshot.SnapshotId}}})
	assert.NoFileExists(t, filepath.Join(d.volumePath(restored.VolumeId), "f"), "restore-empty restores nothing")

	requireRoot(t)
	d, err = New(Config{NodeID: "n", DataDir: t.TempDir(), Fault: FaultPublishEmpty, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	v = create(t, d, "vol", 1<<20, nil)
	target := filepath.Join(t.TempDir(), "mnt")
	_, err = d.NodePublishVolume(context.Background(), &csi.NodePublishVolumeRequest{VolumeId: v.VolumeId, TargetPath: target, VolumeCapability: rwo()[0]})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(target, "f"), []byte("x"), 0o644))
	_, err = d.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: v.VolumeId, TargetPath: target})
	require.NoError(t, err)
	assert.NoFileExists(t, filepath.Join(d.volumePath(v.VolumeId), "f"), "publish-empty keeps nothing")
}
