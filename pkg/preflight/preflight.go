// Package preflight checks what a long step needs before it starts, so that
// a missing prerequisite fails in seconds with the fix in the message instead
// of minutes later with nothing useful.
package preflight

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// EnvMinFreeGiB overrides the free disk a step requires (in GiB).
const EnvMinFreeGiB = "SC_MIN_FREE_GIB"

// GiB is 1<<30 bytes.
const GiB = 1 << 30

// FreeBytes reports the bytes available to unprivileged writers at path, or
// at its nearest existing parent.
func FreeBytes(path string) (uint64, error) {
	for p := path; ; p = filepath.Dir(p) {
		var st syscall.Statfs_t
		err := syscall.Statfs(p, &st)
		if err == nil {
			return st.Bavail * uint64(st.Bsize), nil
		}
		if !os.IsNotExist(err) || p == filepath.Dir(p) {
			return 0, fmt.Errorf("free space of %s: %w", path, err)
		}
	}
}

// Disk fails when any of paths has less than needGiB free (or the number in
// $SC_MIN_FREE_GIB, when set). what names the step for the message.
func Disk(what string, needGiB uint64, paths ...string) error {
	if v := os.Getenv(EnvMinFreeGiB); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return fmt.Errorf("%s=%q is not a whole number of GiB", EnvMinFreeGiB, v)
		}
		needGiB = n
	}
	for _, p := range paths {
		free, err := FreeBytes(p)
		if err != nil {
			return err
		}
		if free < needGiB*GiB {
			return fmt.Errorf("not enough disk for %s: %s has %.1f GiB free, needs %d GiB; free some space (docker system prune, or remove old caches under it) and run again",
				what, p, float64(free)/GiB, needGiB)
		}
	}
	return nil
}
