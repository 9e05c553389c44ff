// Package gobuild compiles Go programs into the build cache, keyed by
// everything that decides their bytes: module files, packages, flags and the
// Go toolchain.
package gobuild

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/stateful-conformance/stateful-conformance/pkg/buildcache"
)

// Spec says what to build.
type Spec struct {
	// Name labels the output in the cache and in progress messages.
	Name string
	// ModuleDir is the directory of the module to build in (a wrapper module
	// whose go.mod and go.sum pin the upstream version). Empty with Install.
	ModuleDir string
	// Packages are the import paths of the main packages to build.
	Packages []string
	// Install builds Packages with "go install pkg@Version", for upstream
	// modules that build as they are published.
	Install string
	// LDFlags are passed to the linker.
	LDFlags string
	// Sources are extra files or directories whose content decides the
	// output.
	Sources []string
	// LocalDeps adds to the key every package of ModuleDir's own module that
	// Packages import (for programs of the project's own module, whose
	// go.sum does not cover them).
	LocalDeps bool
}

// Toolchain is the Go version that builds, part of every key.
func Toolchain(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOVERSION").Output()
	if err != nil {
		return "", fmt.Errorf("go toolchain not found on PATH: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Key derives the cache key of spec without building anything.
func Key(ctx context.Context, spec Spec) (string, error) {
	goVersion, err := Toolchain(ctx)
	if err != nil {
		return "", err
	}
	k := buildcache.NewHasher().
		String("recipe", "gobuild/v1 CGO_ENABLED=0 -trimpath").
		String("go", goVersion).
		String("platform", runtime.GOOS+"/"+runtime.GOARCH).
		String("packages", strings.Join(spec.Packages, " ")).
		String("install", spec.Install).
		String("ldflags", spec.LDFlags)
	if spec.ModuleDir != "" {
		for _, f := range []string{"go.mod", "go.sum"} {
			if err := k.File(f, filepath.Join(spec.ModuleDir, f)); err != nil {
				return "", err
			}
		}
	}
	sources := spec.Sources
	if spec.LocalDeps {
		dirs, err := localDeps(ctx, spec)
		if err != nil {
			return "", err
		}
		sources = append(sources, dirs...)
	}
	for _, src := range sources {
		info, err := os.Stat(src)
		if err != nil {
			return "", err
		}
		// Label by the path inside the module: the same sources must give
		// the same key wherever the checkout is and however it is named.
		label := src
		moduleDir, err1 := filepath.Abs(spec.ModuleDir)
		absSrc, err2 := filepath.Abs(src)
		if err1 == nil && err2 == nil {
			if rel, err := filepath.Rel(moduleDir, absSrc); err == nil && !strings.HasPrefix(rel, "..") {
				label = filepath.ToSlash(rel)
			}
		}
		if info.IsDir() {
			err = k.Tree(label, os.DirFS(src))
		} else {
			err = k.File(label, src)
		}
		if err != nil {
			return "", err
		}
	}
	return k.Sum(), nil
}

// localDeps lists the directories of the packages of spec's own module that
// its packages depend on, themselves included.
func localDeps(ctx context.Context, spec Spec) ([]string, error) {
	args := append([]string{"list", "-deps", "-f", "{{if .Module}}{{if .Module.Main}}{{.Dir}}{{end}}{{end}}"}, spec.Packages...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = spec.ModuleDir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list %s: %w: %s", strings.Join(spec.Packages, " "), err, stderr.String())
	}
	return strings.Fields(string(out)), nil
}

// Build returns a directory holding one binary per package, named as the
// package's last path element, building them only if the cache lacks them.
func Build(ctx context.Context, cache *buildcache.Cache, spec Spec, log io.Writer) (string, error) {
	key, err := Key(ctx, spec)
	if err != nil {
		return "", fmt.Errorf("%s: %w", spec.Name, err)
	}
	if cache.Has("bin/"+spec.Name, key) {
		return cache.Path("bin/"+spec.Name, key), nil
	}
	start := time.Now()
	fmt.Fprintf(log, "• building %s ...\n", spec.Name)
	dir, err := cache.Ensure("bin/"+spec.Name, key, func(out string) error {
		var cmd *exec.Cmd
		if spec.Install != "" {
			args := []string{"install", "-trimpath", "-ldflags", spec.LDFlags}
			for _, p := range spec.Packages {
				args = append(args, p+"@"+spec.Install)
			}
			cmd = exec.CommandContext(ctx, "go", args...)
			cmd.Env = append(os.Environ(), "GOBIN="+out)
		} else {
			args := append([]string{"build", "-trimpath", "-ldflags", spec.LDFlags, "-o", out + "/"}, spec.Packages...)
			cmd = exec.CommandContext(ctx, "go", args...)
			cmd.Dir = spec.ModuleDir
			cmd.Env = os.Environ()
		}
		// GOFLAGS from the caller (say -mod=vendor) must not change what a
		// wrapper module builds; static binaries run in any image.
		cmd.Env = append(cmd.Env, "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
		var stderr bytes.Buffer
		cmd.Stdout = log
		cmd.Stderr = &stderr
		stop := heartbeat(log, spec.Name, start)
		err := cmd.Run()
		stop()
		if err != nil {
			return fmt.Errorf("go %s: %w\n%s", cmd.Args[1], err, LastLines(stderr.String(), 40))
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("building %s: %w", spec.Name, err)
	}
	fmt.Fprintf(log, "  built %s (%s) in %s\n", spec.Name, strings.Join(binaries(dir), ", "), time.Since(start).Round(time.Second))
	if err := cache.Prune("bin/"+spec.Name, key); err != nil {
		return "", err
	}
	return dir, nil
}

// heartbeat says every minute that a long build is still going, until stop.
func heartbeat(log io.Writer, name string, start time.Time) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintf(log, "  still building %s (%s)\n", name, time.Since(start).Round(time.Second))
			}
		}
	}()
	return func() { close(done) }
}

// binaries lists the files of a build output directory.
func binaries(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// LastLines is the last n lines of s, for errors that quote a tool's output.
func LastLines(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}
