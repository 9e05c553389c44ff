// Package docker runs the docker CLI for the few engine operations the
// project needs (kind itself drives docker the same way).
package docker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// ErrNotRunning means no Docker engine answered.
var ErrNotRunning = errors.New("docker is not running")

// Run runs docker with args and returns its trimmed standard output. A
// failure carries docker's standard error.
func Run(ctx context.Context, args ...string) (string, error) {
	return RunIO(ctx, nil, nil, args...)
}

// RunIO is Run with standard input and, when stdout is not nil, standard
// output streamed to it.
func RunIO(ctx context.Context, stdin io.Reader, stdout io.Writer, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout = &out
	if stdout != nil {
		cmd.Stdout = stdout
	}
	cmd.Stderr = &errb
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if msg == "" {
			msg = strings.TrimSpace(out.String())
		}
		return "", fmt.Errorf("docker %s: %w: %s", first(args), err, msg)
	}
	return strings.TrimSpace(out.String()), nil
}

// Check fails fast, with the fix in the message, when no engine answers.
func Check(ctx context.Context) error {
	if _, err := exec.LookPath("docker"); err != nil {
		return fmt.Errorf("%w: the docker CLI is not on PATH; install Docker (on this project's machines: ../shared/tools/dockerd-up)", ErrNotRunning)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := Run(ctx, "version", "--format", "{{.Server.Version}}"); err != nil {
		where := os.Getenv("DOCKER_HOST")
		if where == "" {
			where = "unix:///var/run/docker.sock"
		}
		return fmt.Errorf("%w (no engine answered at %s): start it (on this project's machines: ../shared/tools/dockerd-up; elsewhere: systemctl start docker)", ErrNotRunning, where)
	}
	return nil
}

// ImageExists reports whether the engine has ref locally.
func ImageExists(ctx context.Context, ref string) bool {
	_, err := Run(ctx, "image", "inspect", "--format", "{{.Id}}", ref)
	return err == nil
}

// RootDir is the engine's data directory, where images and containers live.
func RootDir(ctx context.Context) (string, error) {
	return Run(ctx, "info", "--format", "{{.DockerRootDir}}")
}

// Images lists the local images of repository repo as repo:tag strings.
func Images(ctx context.Context, repo string) ([]string, error) {
	out, err := Run(ctx, "images", "--format", "{{.Repository}}:{{.Tag}}", repo)
	if err != nil || out == "" {
		return nil, err
	}
	return strings.Split(out, "\n"), nil
}

func first(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}

// Build builds the Dockerfile in contextDir as tag with the legacy builder
// (these machines have no BuildKit).
func Build(ctx context.Context, contextDir, tag string, buildArgs map[string]string) error {
	args := []string{"build", "-q", "--network", "none", "-t", tag}
	for k, v := range buildArgs {
		args = append(args, "--build-arg", k+"="+v)
	}
	cmd := exec.CommandContext(ctx, "docker", append(args, contextDir)...)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("docker build %s: %w\n%s", tag, err, strings.TrimSpace(string(out)))
	}
	return nil
}
