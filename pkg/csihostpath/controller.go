package csihostpath

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// DefaultCapacity is a volume's size when the request names none.
const DefaultCapacity int64 = 1 << 30

// checkCapability refuses what a directory on one node cannot be.
func checkCapability(c *csi.VolumeCapability) error {
	if c == nil {
		return status.Error(codes.InvalidArgument, "volume capability missing")
	}
	if c.GetBlock() != nil {
		return status.Error(codes.InvalidArgument, "block volumes are not supported: hostpath volumes are directories; use volumeMode: Filesystem")
	}
	if c.GetMount() == nil {
		return status.Error(codes.InvalidArgument, "volume capability has no access type: want mount")
	}
	if c.GetAccessMode() == nil {
		return status.Error(codes.InvalidArgument, "volume capability has no access mode")
	}
	switch m := c.GetAccessMode().GetMode(); m {
	case csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER,
		csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER:
		return nil
	default:
		return status.Errorf(codes.InvalidArgument, "access mode %s is not supported: a hostpath volume lives on one node; use ReadWriteOnce or ReadWriteOncePod", m)
	}
}

func checkCapabilities(caps []*csi.VolumeCapability) error {
	if len(caps) == 0 {
		return status.Error(codes.InvalidArgument, "volume capabilities missing")
	}
	for _, c := range caps {
		if err := checkCapability(c); err != nil {
			return err
		}
	}
	return nil
}

// size picks a volume's capacity from a request's range.
func size(r *csi.CapacityRange) (int64, error) {
	required, limit := r.GetRequiredBytes(), r.GetLimitBytes()
	if required < 0 || limit < 0 {
		return 0, status.Error(codes.InvalidArgument, "capacity range is negative")
	}
	if limit > 0 && required > limit {
		return 0, status.Errorf(codes.InvalidArgument, "capacity range: required %d bytes exceeds the limit of %d", required, limit)
	}
	switch {
	case required > 0:
		return required, nil
	case limit > 0 && limit < DefaultCapacity:
		return limit, nil
	}
	return DefaultCapacity, nil
}

func fits(capacity int64, r *csi.CapacityRange) bool {
	return capacity >= r.GetRequiredBytes() && (r.GetLimitBytes() == 0 || capacity <= r.GetLimitBytes())
}

// checkFree refuses a size the node's disk cannot hold.
func (d *Driver) checkFree(bytes int64) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(d.cfg.DataDir, &st); err != nil {
		return status.Errorf(codes.Internal, "free space of %s: %v", d.cfg.DataDir, err)
	}
	free := int64(st.Bavail) * st.Bsize
	if bytes > free {
		return status.Errorf(codes.OutOfRange, "requested %s is more than the %s free on node %s (%s): ask for less, or free space on the node",
			human(bytes), human(free), d.cfg.NodeID, d.cfg.DataDir)
	}
	return nil
}

func human(b int64) string {
	const gi = 1 << 30
	if b >= gi {
		return fmt.Sprintf("%.1f GiB", float64(b)/gi)
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}

func (d *Driver) topology() []*csi.Topology {
	return []*csi.Topology{{Segments: map[string]string{TopologyKey: d.cfg.NodeID}}}
}

func sourceOf(src *csi.VolumeContentSource) string {
	switch {
	case src.GetSnapshot() != nil:
		return "snapshot:" + src.GetSnapshot().GetSnapshotId()
	case src.GetVolume() != nil:
		return "volume:" + src.GetVolume().GetVolumeId()
	}
	return ""
}

func (d *Driver) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume name missing")
	}
	if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		return nil, err
	}
	capacity, err := size(req.GetCapacityRange())
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	src := req.GetVolumeContentSource()
	if v := d.state.volumeByName(req.GetName()); v != nil {
		// Idempotent by name: the same request gets the same volume.
		if !fits(v.Capacity, req.GetCapacityRange()) || v.Source != sourceOf(src) {
			return nil, status.Errorf(codes.AlreadyExists, "volume %q exists with %d bytes from %q, incompatible with this request", req.GetName(), v.Capacity, v.Source)
		}
		return &csi.CreateVolumeResponse{Volume: d.csiVolume(v, src)}, nil
	}
	// Find the source before taking space for it.
	var fill func(dir string) error
	switch {
	case src.GetSnapshot() != nil:
		sn, ok := d.state.Snapshots[src.GetSnapshot().GetSnapshotId()]
		if !ok {
			return nil, status.Errorf(codes.NotFound, "source snapshot %s not found", src.GetSnapshot().GetSnapshotId())
		}
		if capacity < sn.Size {
			return nil, status.Errorf(codes.OutOfRange, "volume of %d bytes is smaller than snapshot %s (%d bytes)", capacity, sn.ID, sn.Size)
		}
		fill = func(dir string) error { return extractArchive(d.snapshotPath(sn.ID), dir) }
		if d.cfg.Fault == FaultRestoreEmpty {
			fill = nil
		}
	case src.GetVolume() != nil:
		sv, ok := d.state.Volumes[src.GetVolume().GetVolumeId()]
		if !ok {
			return nil, status.Errorf(codes.NotFound, "source volume %s not found", src.GetVolume().GetVolumeId())
		}
		if capacity < sv.Capacity {
			return nil, status.Errorf(codes.OutOfRange, "volume of %d bytes is smaller than source volume %s (%d bytes)", capacity, sv.ID, sv.Capacity)
		}
		fill = func(dir string) error { return copyDir(d.volumePath(sv.ID), dir) }
	}
	if err := d.checkFree(capacity); err != nil {
		return nil, err
	}
	v := &Volume{ID: newID(), Name: req.GetName(), Capacity: capacity, Source: sourceOf(src)}
	dir := d.volumePath(v.ID)
	// Pods that run as any user write to their volume, as on upstream's
	// hostpath driver; the directory is reachable only through the kubelet.
	if err := os.Mkdir(dir, 0o777); err != nil {
		return nil, status.Errorf(codes.Internal, "creating %s: %v", dir, err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		return nil, status.Errorf(codes.Internal, "creating %s: %v", dir, err)
	}
	if fill != nil {
		if err := fill(dir); err != nil {
			os.RemoveAll(dir)
			return nil, status.Errorf(codes.Internal, "filling volume from %s: %v", v.Source, err)
		}
	}
	d.state.Volumes[v.ID] = v
	if err := d.save(); err != nil {
		delete(d.state.Volumes, v.ID)
		os.RemoveAll(dir)
		return nil, err
	}
	return &csi.CreateVolumeResponse{Volume: d.csiVolume(v, src)}, nil
}

func (d *Driver) csiVolume(v *Volume, src *csi.VolumeContentSource) *csi.Volume {
	return &csi.Volume{VolumeId: v.ID, CapacityBytes: v.Capacity, ContentSource: src, AccessibleTopology: d.topology()}
}

func (d *Driver) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume ID missing")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.state.Volumes[req.GetVolumeId()]
	if !ok {
		return &csi.DeleteVolumeResponse{}, nil
	}
	if len(v.Published) > 0 {
		return nil, status.Errorf(codes.FailedPrecondition, "volume %s is still published at %s: delete the pods using it first", v.ID, targets(v))
	}
	if err := os.RemoveAll(d.volumePath(v.ID)); err != nil {
		return nil, status.Errorf(codes.Internal, "removing %s: %v", d.volumePath(v.ID), err)
	}
	delete(d.state.Volumes, v.ID)
	return &csi.DeleteVolumeResponse{}, d.save()
}

func targets(v *Volume) string {
	s := ""
	for t := range v.Published {
		if s != "" {
			s += ", "
		}
		s += t
	}
	return s
}

func (d *Driver) ValidateVolumeCapabilities(ctx context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume ID missing")
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "volume capabilities missing")
	}
	d.mu.Lock()
	_, ok := d.state.Volumes[req.GetVolumeId()]
	d.mu.Unlock()
	if !ok {
		return nil, status.Errorf(codes.NotFound, "volume %s not found", req.GetVolumeId())
	}
	if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: err.Error()}, nil
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext: req.GetVolumeContext(), VolumeCapabilities: req.GetVolumeCapabilities(), Parameters: req.GetParameters(),
	}}, nil
}

func (d *Driver) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	var caps []*csi.ControllerServiceCapability
	for _, t := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
		csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
		csi.ControllerServiceCapability_RPC_EXPAND_VOLUME,
		// SINGLE_NODE_SINGLE_WRITER (ReadWriteOncePod) and SINGLE_NODE_MULTI_WRITER.
		csi.ControllerServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
	} {
		caps = append(caps, &csi.ControllerServiceCapability{Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: t}}})
	}
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}

func (d *Driver) CreateSnapshot(ctx context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "snapshot name missing")
	}
	if req.GetSourceVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "source volume ID missing")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if sn := d.state.snapshotByName(req.GetName()); sn != nil {
		if sn.SourceVolumeID != req.GetSourceVolumeId() {
			return nil, status.Errorf(codes.AlreadyExists, "snapshot %q exists of volume %s, not %s", req.GetName(), sn.SourceVolumeID, req.GetSourceVolumeId())
		}
		return &csi.CreateSnapshotResponse{Snapshot: csiSnapshot(sn)}, nil
	}
	v, ok := d.state.Volumes[req.GetSourceVolumeId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "source volume %s not found", req.GetSourceVolumeId())
	}
	sn := &Snapshot{ID: newID(), Name: req.GetName(), SourceVolumeID: v.ID, Size: v.Capacity, CreatedAt: time.Now().UTC()}
	if err := writeArchive(d.volumePath(v.ID), d.snapshotPath(sn.ID)); err != nil {
		return nil, status.Errorf(codes.Internal, "archiving volume %s: %v", v.ID, err)
	}
	d.state.Snapshots[sn.ID] = sn
	if err := d.save(); err != nil {
		delete(d.state.Snapshots, sn.ID)
		os.Remove(d.snapshotPath(sn.ID))
		return nil, err
	}
	return &csi.CreateSnapshotResponse{Snapshot: csiSnapshot(sn)}, nil
}

func csiSnapshot(sn *Snapshot) *csi.Snapshot {
	return &csi.Snapshot{SnapshotId: sn.ID, SourceVolumeId: sn.SourceVolumeID, SizeBytes: sn.Size,
		CreationTime: timestamppb.New(sn.CreatedAt), ReadyToUse: true}
}

func (d *Driver) DeleteSnapshot(ctx context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	if req.GetSnapshotId() == "" {
		return nil, status.Error(codes.InvalidArgument, "snapshot ID missing")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.state.Snapshots[req.GetSnapshotId()]; !ok {
		return &csi.DeleteSnapshotResponse{}, nil
	}
	if err := os.Remove(d.snapshotPath(req.GetSnapshotId())); err != nil && !os.IsNotExist(err) {
		return nil, status.Errorf(codes.Internal, "removing snapshot: %v", err)
	}
	delete(d.state.Snapshots, req.GetSnapshotId())
	return &csi.DeleteSnapshotResponse{}, d.save()
}

func (d *Driver) ListSnapshots(ctx context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	if req.GetMaxEntries() < 0 {
		return nil, status.Error(codes.InvalidArgument, "max_entries is negative")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var all []*Snapshot
	for _, sn := range d.state.sortedSnapshots() {
		if req.GetSnapshotId() != "" && sn.ID != req.GetSnapshotId() {
			continue
		}
		if req.GetSourceVolumeId() != "" && sn.SourceVolumeID != req.GetSourceVolumeId() {
			continue
		}
		all = append(all, sn)
	}
	start := 0
	if tok := req.GetStartingToken(); tok != "" {
		n, err := strconv.Atoi(tok)
		if err != nil || n < 0 || n > len(all) {
			return nil, status.Errorf(codes.Aborted, "starting token %q is not one this plugin gave", tok)
		}
		start = n
	}
	end := len(all)
	if m := int(req.GetMaxEntries()); m > 0 && start+m < end {
		end = start + m
	}
	resp := &csi.ListSnapshotsResponse{}
	for _, sn := range all[start:end] {
		resp.Entries = append(resp.Entries, &csi.ListSnapshotsResponse_Entry{Snapshot: csiSnapshot(sn)})
	}
	if end < len(all) {
		resp.NextToken = strconv.Itoa(end)
	}
	return resp, nil
}

func (d *Driver) ControllerExpandVolume(ctx context.Context, req *csi.ControllerExpandVolumeRequest) (*csi.ControllerExpandVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume ID missing")
	}
	if req.GetCapacityRange() == nil {
		return nil, status.Error(codes.InvalidArgument, "capacity range missing")
	}
	capacity, err := size(req.GetCapacityRange())
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, err := d.volume(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	if capacity > v.Capacity {
		if err := d.checkFree(capacity - v.Capacity); err != nil {
			return nil, err
		}
		v.Capacity = capacity
		if err := d.save(); err != nil {
			return nil, err
		}
	}
	// A directory needs nothing done on the node to be larger.
	return &csi.ControllerExpandVolumeResponse{CapacityBytes: v.Capacity, NodeExpansionRequired: false}, nil
}
