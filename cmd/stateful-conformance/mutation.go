package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/stateful-conformance/stateful-conformance/pkg/mutation"
	"github.com/stateful-conformance/stateful-conformance/pkg/verdict"
)

// casesDir holds the broken labs, relative to the checkout.
const casesDir = "tests/testdata/broken"

type mutationOptions struct {
	Root, KindConfig, Name, Baseline string
	// Cases names the cases to run; all when empty.
	Cases []string
	Log   io.Writer
}

// runMutation runs the suite's behaviour features against each broken lab
// on the kind cluster (kept between runs) and judges each run.
func runMutation(ctx context.Context, o mutationOptions) error {
	all, err := mutation.Load(filepath.Join(o.Root, casesDir))
	if err != nil {
		return err
	}
	cases := all
	if len(o.Cases) > 0 {
		cases = nil
		byName := map[string]mutation.Case{}
		for _, c := range all {
			byName[c.Name] = c
		}
		for _, n := range o.Cases {
			c, ok := byName[n]
			if !ok {
				return fmt.Errorf("no case %q under %s (cases: %s)", n, casesDir, caseNames(all))
			}
			cases = append(cases, c)
		}
	}
	artifacts := filepath.Join(o.Root, "_artifacts", "mutation")
	baseline := o.Baseline
	if baseline == "" {
		fmt.Fprintln(o.Log, "• mutation: the correct lab first, for the baseline")
		baseline, err = runSuite(ctx, o, filepath.Join(o.Root, "manifests/lab"), filepath.Join(artifacts, "baseline"))
		if err != nil {
			return err
		}
	}
	base, err := verdict.Read(baseline)
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	skipped := map[string]bool{}
	for _, f := range base.Features {
		switch f.Status {
		case verdict.Skipped:
			skipped[f.Name] = true
		case verdict.Failed, verdict.NotRun:
			return fmt.Errorf("baseline %s: feature %s %s on the correct lab (%s): fix that first", baseline, f.Name, f.Status, f.Messages())
		}
	}
	var results []mutation.Result
	caught := 0
	for i, c := range cases {
		fmt.Fprintf(o.Log, "• mutation %d/%d: %s (%s), expecting %s to fail naming %q\n", i+1, len(cases), c.Name, c.Breaks, c.Feature, c.Cause)
		path, err := runSuite(ctx, o, c.Dir, filepath.Join(artifacts, c.Name))
		if err != nil {
			return fmt.Errorf("case %s: %w", c.Name, err)
		}
		rep, err := verdict.Read(path)
		if err != nil {
			return fmt.Errorf("case %s: %w", c.Name, err)
		}
		r := mutation.Judge(c, rep, skipped)
		results = append(results, r)
		if r.Caught {
			caught++
			fmt.Fprintf(o.Log, "  caught: %s failed: %s\n", c.Feature, r.Message)
		} else {
			fmt.Fprintf(o.Log, "  NOT CAUGHT: %s\n", strings.Join(r.Problems, "; "))
		}
	}
	if len(o.Cases) == 0 {
		doc := filepath.Join(o.Root, "docs", "mutation.md")
		if err := os.WriteFile(doc, []byte(mutationDoc(results)), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(o.Log, "• wrote %s\n", doc)
	}
	fmt.Fprintf(o.Log, "mutation: %d passed, %d failed\n", caught, len(results)-caught)
	if caught != len(results) {
		return fmt.Errorf("%d of %d broken labs were not caught as expected", len(results)-caught, len(results))
	}
	return nil
}

// runSuite runs the behaviour features against the lab in labDir, keeping
// the cluster, and returns the path of the verdicts. The run's exit status
// is not the judgement (a broken lab is meant to fail features); the
// verdicts are.
func runSuite(ctx context.Context, o mutationOptions, labDir, reportDir string) (string, error) {
	if err := os.MkdirAll(reportDir, 0o755); err != nil {
		return "", err
	}
	kindConfig, err := filepath.Abs(o.KindConfig)
	if err != nil {
		return "", err
	}
	logPath := filepath.Join(reportDir, "go-test.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return "", err
	}
	defer logFile.Close()
	report := filepath.Join(reportDir, verdict.FileName)
	_ = os.Remove(report)
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", "test", "-count=1", "-v", "-timeout", "30m", "./tests", "-args",
		"--keep-cluster", "--cluster-name="+o.Name, "--kind-config="+kindConfig, "--lab-dir="+labDir,
		"--report-dir="+reportDir, "--labels=suite=conformance")
	cmd.Dir = o.Root
	cmd.Stdout, cmd.Stderr = logFile, logFile
	runErr := cmd.Run()
	if _, err := os.Stat(report); err != nil {
		return "", fmt.Errorf("the suite wrote no verdicts (%v); its log: %s", runErr, logPath)
	}
	fmt.Fprintf(o.Log, "  suite ran in %s (log %s)\n", time.Since(start).Round(time.Second), logPath)
	return report, nil
}

func caseNames(cs []mutation.Case) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return strings.Join(out, ", ")
}

func mutationDoc(results []mutation.Result) string {
	return `# Mutation: every broken lab is caught

Each case under ` + "`tests/testdata/broken/`" + ` is an overlay of ` + "`manifests/lab`" + `
that breaks one behaviour the lesson teaches. ` + "`make mutation`" + ` runs the
suite's behaviour features (` + "`--labels suite=conformance`" + `) against each on
the kind cluster and passes only when the case's expected feature fails
with a message naming the expected cause, and every feature the case does
not touch passes (or is skipped as on the correct lab). The features a
case may also break are named in its ` + "`expected.json`" + `, with why.

This file is written by ` + "`make mutation`" + ` (all cases); the table is its
last run.

` + mutation.Markdown(results)
}
