package nodeimage

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// copyTree copies the regular files below src to dst. mode, when not nil,
// sets each file's mode from its path relative to src; otherwise the source
// mode is kept.
func copyTree(src, dst string, mode func(rel string) os.FileMode) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		var m os.FileMode
		if mode != nil {
			m = mode(filepath.ToSlash(rel))
		}
		return copyFile(path, filepath.Join(dst, rel), m)
	})
}

// copyFile copies src to dst with mode (the source's mode when 0).
func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if mode == 0 {
		info, err := in.Stat()
		if err != nil {
			return err
		}
		mode = info.Mode().Perm()
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	// The umask must not decide a file's mode in the image.
	return os.Chmod(dst, mode)
}
