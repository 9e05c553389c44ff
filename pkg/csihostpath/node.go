package csihostpath

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func (d *Driver) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	var caps []*csi.NodeServiceCapability
	for _, t := range []csi.NodeServiceCapability_RPC_Type{
		csi.NodeServiceCapability_RPC_GET_VOLUME_STATS,
		csi.NodeServiceCapability_RPC_EXPAND_VOLUME,
		csi.NodeServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
	} {
		caps = append(caps, &csi.NodeServiceCapability{Type: &csi.NodeServiceCapability_Rpc{Rpc: &csi.NodeServiceCapability_RPC{Type: t}}})
	}
	return &csi.NodeGetCapabilitiesResponse{Capabilities: caps}, nil
}

func (d *Driver) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{
		NodeId:             d.cfg.NodeID,
		MaxVolumesPerNode:  d.cfg.MaxVolumesPerNode,
		AccessibleTopology: d.topology()[0],
	}, nil
}

// NodePublishVolume bind-mounts the volume's directory at the target path,
// read-only when asked or when the access mode allows only reading.
func (d *Driver) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	switch {
	case req.GetVolumeId() == "":
		return nil, status.Error(codes.InvalidArgument, "volume ID missing")
	case req.GetTargetPath() == "":
		return nil, status.Error(codes.InvalidArgument, "target path missing")
	}
	if err := checkCapability(req.GetVolumeCapability()); err != nil {
		return nil, err
	}
	readOnly := req.GetReadonly() || req.GetVolumeCapability().GetAccessMode().GetMode() == csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY
	d.mu.Lock()
	defer d.mu.Unlock()
	v, err := d.volume(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	target := req.GetTargetPath()
	if req.GetVolumeCapability().GetAccessMode().GetMode() == csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER {
		for other := range v.Published {
			if other != target {
				return nil, status.Errorf(codes.FailedPrecondition, "volume %s is single-writer (ReadWriteOncePod) and already published at %s", v.ID, other)
			}
		}
	}
	if ro, published := v.Published[target]; published {
		if ro != readOnly {
			return nil, status.Errorf(codes.AlreadyExists, "volume %s is published at %s with read-only=%t", v.ID, target, ro)
		}
		if isMountPoint(target) {
			return &csi.NodePublishVolumeResponse{}, nil
		}
	}
	if err := os.MkdirAll(target, 0o750); err != nil {
		return nil, status.Errorf(codes.Internal, "creating target %s: %v", target, err)
	}
	if !isMountPoint(target) {
		mount := bindMount
		if d.cfg.Fault == FaultPublishEmpty {
			mount = mountEmpty
		}
		if err := mount(d.volumePath(v.ID), target, readOnly); err != nil {
			return nil, status.Errorf(codes.Internal, "publishing volume %s: %v", v.ID, err)
		}
	}
	if v.Published == nil {
		v.Published = map[string]bool{}
	}
	v.Published[target] = readOnly
	if err := d.save(); err != nil {
		_ = unmountAndRemove(target)
		delete(v.Published, target)
		return nil, err
	}
	return &csi.NodePublishVolumeResponse{}, nil
}

func (d *Driver) NodeUnpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	switch {
	case req.GetVolumeId() == "":
		return nil, status.Error(codes.InvalidArgument, "volume ID missing")
	case req.GetTargetPath() == "":
		return nil, status.Error(codes.InvalidArgument, "target path missing")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, err := d.volume(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	if err := unmountAndRemove(req.GetTargetPath()); err != nil {
		return nil, status.Errorf(codes.Internal, "unpublishing volume %s: %v", v.ID, err)
	}
	if _, published := v.Published[req.GetTargetPath()]; published {
		delete(v.Published, req.GetTargetPath())
		return &csi.NodeUnpublishVolumeResponse{}, d.save()
	}
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

// NodeGetVolumeStats reports the volume's capacity, what its files use and
// the inodes of the file system under it.
func (d *Driver) NodeGetVolumeStats(ctx context.Context, req *csi.NodeGetVolumeStatsRequest) (*csi.NodeGetVolumeStatsResponse, error) {
	capacity, err := d.capacityAt(req.GetVolumeId(), req.GetVolumePath())
	if err != nil {
		return nil, err
	}
	used, err := diskUsage(d.volumePath(req.GetVolumeId()))
	if err != nil {
		return nil, status.Errorf(codes.Internal, "measuring volume %s: %v", req.GetVolumeId(), err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(req.GetVolumePath(), &st); err != nil {
		return nil, status.Errorf(codes.Internal, "statfs %s: %v", req.GetVolumePath(), err)
	}
	available := capacity - used
	if available < 0 {
		available = 0
	}
	return &csi.NodeGetVolumeStatsResponse{Usage: []*csi.VolumeUsage{
		{Unit: csi.VolumeUsage_BYTES, Total: capacity, Used: used, Available: available},
		{Unit: csi.VolumeUsage_INODES, Total: int64(st.Files), Used: int64(st.Files - st.Ffree), Available: int64(st.Ffree)},
	}}, nil
}

// NodeExpandVolume has nothing to grow on the node (a directory has no file
// system of its own); it reports the capacity the controller recorded.
func (d *Driver) NodeExpandVolume(ctx context.Context, req *csi.NodeExpandVolumeRequest) (*csi.NodeExpandVolumeResponse, error) {
	capacity, err := d.capacityAt(req.GetVolumeId(), req.GetVolumePath())
	if err != nil {
		return nil, err
	}
	return &csi.NodeExpandVolumeResponse{CapacityBytes: capacity}, nil
}

// capacityAt checks a request naming volume id at path (both given, the
// volume known, the path there) and returns the volume's capacity.
func (d *Driver) capacityAt(id, path string) (int64, error) {
	switch {
	case id == "":
		return 0, status.Error(codes.InvalidArgument, "volume ID missing")
	case path == "":
		return 0, status.Error(codes.InvalidArgument, "volume path missing")
	}
	d.mu.Lock()
	v, err := d.volume(id)
	var capacity int64
	if err == nil {
		capacity = v.Capacity
	}
	d.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if _, err := os.Stat(path); err != nil {
		return 0, status.Errorf(codes.NotFound, "volume path %s: %v", path, err)
	}
	return capacity, nil
}

// diskUsage adds up the sizes of the files below dir.
func diskUsage(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.Type().IsRegular() {
			info, err := e.Info()
			if err != nil {
				return err
			}
			total += info.Size()
		}
		return nil
	})
	return total, err
}
