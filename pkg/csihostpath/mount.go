package csihostpath

import (
	"errors"
	"fmt"
	"os"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// The plugin runs from an image with nothing but its own binary, so it
// mounts with system calls instead of running mount(8).

// bindMount mounts src at target, then makes it read-only if asked (a bind
// mount takes MS_RDONLY only on a remount).
func bindMount(src, target string, readOnly bool) error {
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind mount %s at %s: %w", src, target, err)
	}
	if readOnly {
		if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			_ = unix.Unmount(target, 0)
			return fmt.Errorf("making %s read-only: %w", target, err)
		}
	}
	return nil
}

// mountEmpty mounts a fresh tmpfs at target in place of the volume: the
// FaultPublishEmpty fault.
func mountEmpty(_, target string, readOnly bool) error {
	var flags uintptr
	if readOnly {
		flags = unix.MS_RDONLY
	}
	return unix.Mount("tmpfs", target, "tmpfs", flags, "size=16m,mode=0777")
}

// isMountPoint reports whether path is a mount point.
func isMountPoint(path string) bool {
	mounted, err := mountinfo.Mounted(path)
	return err == nil && mounted
}

// unmountAndRemove unmounts target if it is mounted and removes the
// directory; a target that is already gone is fine.
func unmountAndRemove(target string) error {
	if isMountPoint(target) {
		if err := unix.Unmount(target, 0); err != nil {
			return fmt.Errorf("unmount %s: %w", target, err)
		}
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
