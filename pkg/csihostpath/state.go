package csihostpath

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// Volume is a provisioned volume: a directory under the data directory.
type Volume struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Capacity int64  `json:"capacity"`
	// Source is "snapshot:<id>" or "volume:<id>" when the volume was
	// created from one, so that a repeated CreateVolume can be compared.
	Source string `json:"source,omitempty"`
	// Published maps each target path the volume is bind-mounted at to
	// whether that mount is read-only.
	Published map[string]bool `json:"published,omitempty"`
}

// Snapshot is a point-in-time copy of a volume: a gzipped tar archive.
type Snapshot struct {
	ID             string    `json:"id"`
	Name           string    `json:"name"`
	SourceVolumeID string    `json:"sourceVolumeID"`
	Size           int64     `json:"size"`
	CreatedAt      time.Time `json:"createdAt"`
}

// state is what the plugin knows, persisted as JSON in the data directory so
// a restarted plugin (or a new pod on the same node) carries on.
type state struct {
	Volumes   map[string]*Volume   `json:"volumes"`
	Snapshots map[string]*Snapshot `json:"snapshots"`
}

func loadState(file string) (*state, error) {
	s := &state{Volumes: map[string]*Volume{}, Snapshots: map[string]*Snapshot{}}
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, s); err != nil {
		return nil, err
	}
	if s.Volumes == nil {
		s.Volumes = map[string]*Volume{}
	}
	if s.Snapshots == nil {
		s.Snapshots = map[string]*Snapshot{}
	}
	return s, nil
}

// save writes the state atomically: a crash leaves the old or the new file.
func (s *state) save(file string) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Clean(file))
}

func (s *state) volumeByName(name string) *Volume {
	for _, v := range s.Volumes {
		if v.Name == name {
			return v
		}
	}
	return nil
}

func (s *state) snapshotByName(name string) *Snapshot {
	for _, sn := range s.Snapshots {
		if sn.Name == name {
			return sn
		}
	}
	return nil
}

// sortedSnapshots lists snapshots oldest first (then by ID), the order
// ListSnapshots pages through.
func (s *state) sortedSnapshots() []*Snapshot {
	out := make([]*Snapshot, 0, len(s.Snapshots))
	for _, sn := range s.Snapshots {
		out = append(out, sn)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}
