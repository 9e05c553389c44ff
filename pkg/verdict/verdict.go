// Package verdict records what each feature of the suite concluded, with the
// cause in the lab's own terms and the figures it measured, and writes it as
// JSON for tools (make mutation) and people to read after the run.
package verdict

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// Status is the outcome of an assessment or of a whole feature.
type Status string

const (
	Passed  Status = "passed"
	Failed  Status = "failed"
	Skipped Status = "skipped"
	// NotRun is a feature none of whose assessments ran (filtered out, or
	// its setup failed).
	NotRun Status = "not run"
)

// Assessment is one assessment's outcome; Message is the failure's cause or
// the skip's reason.
type Assessment struct {
	Name    string  `json:"name"`
	Status  Status  `json:"status"`
	Message string  `json:"message,omitempty"`
	Seconds float64 `json:"seconds"`
}

// Feature is one feature's outcome: failed if any assessment failed, skipped
// if every one was skipped, passed otherwise.
type Feature struct {
	Name        string            `json:"name"`
	Labels      map[string]string `json:"labels,omitempty"`
	Status      Status            `json:"status"`
	Assessments []Assessment      `json:"assessments"`
	// Figures are what the feature measured, by name ("mongo-0 back": "4.1s").
	Figures map[string]string `json:"figures,omitempty"`
}

// Report is a whole run.
type Report struct {
	LabDir string `json:"labDir"`
	// LabProblems are what deploying the lab found wrong (parts that never
	// became ready, objects the cluster refused); the features still ran.
	LabProblems []string   `json:"labProblems,omitempty"`
	Features    []*Feature `json:"features"`
}

// Recorder collects outcomes; it is safe for concurrent use.
type Recorder struct {
	mu     sync.Mutex
	report Report
	index  map[string]*Feature
}

// NewRecorder starts a report for the lab in labDir.
func NewRecorder(labDir string) *Recorder {
	return &Recorder{report: Report{LabDir: labDir}, index: map[string]*Feature{}}
}

func (r *Recorder) feature(name string) *Feature {
	f, ok := r.index[name]
	if !ok {
		f = &Feature{Name: name, Status: NotRun}
		r.index[name] = f
		r.report.Features = append(r.report.Features, f)
	}
	return f
}

// Begin registers a feature with its labels.
func (r *Recorder) Begin(feature string, labels map[string]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.feature(feature).Labels = labels
}

// Assessed records one assessment's outcome.
func (r *Recorder) Assessed(feature string, a Assessment) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.feature(feature)
	f.Assessments = append(f.Assessments, a)
	f.Status = rollUp(f.Assessments)
}

// Figure records a measured figure of a feature.
func (r *Recorder) Figure(feature, name string, value any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.feature(feature)
	if f.Figures == nil {
		f.Figures = map[string]string{}
	}
	switch v := value.(type) {
	case time.Duration:
		f.Figures[name] = v.Round(time.Millisecond).String()
	default:
		f.Figures[name] = fmt.Sprint(v)
	}
}

// LabProblem records what deploying the lab found wrong.
func (r *Recorder) LabProblem(p string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.report.LabProblems = append(r.report.LabProblems, p)
}

// LabProblems returns what LabProblem recorded.
func (r *Recorder) LabProblems() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.report.LabProblems...)
}

// Report returns a copy of what was recorded, features in name order.
func (r *Recorder) Report() Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.report
	out.Features = nil
	for _, f := range r.report.Features {
		c := *f
		c.Assessments = append([]Assessment(nil), f.Assessments...)
		out.Features = append(out.Features, &c)
	}
	sort.Slice(out.Features, func(i, j int) bool { return out.Features[i].Name < out.Features[j].Name })
	return out
}

func rollUp(as []Assessment) Status {
	s := Skipped
	for _, a := range as {
		switch a.Status {
		case Failed:
			return Failed
		case Passed:
			s = Passed
		}
	}
	return s
}

// FileName is the report's name in the report directory.
const FileName = "results.json"

// Write writes the report to dir/results.json.
func (r *Recorder) Write(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	data, err := json.MarshalIndent(r.Report(), "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, FileName)
	return path, os.WriteFile(path, append(data, '\n'), 0o644)
}

// Read reads a report written by Write.
func Read(path string) (*Report, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rep Report
	if err := json.Unmarshal(data, &rep); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &rep, nil
}

// Find returns the feature named name, or nil.
func (rep *Report) Find(name string) *Feature {
	for _, f := range rep.Features {
		if f.Name == name {
			return f
		}
	}
	return nil
}

// Messages joins the feature's failure (or skip) messages.
func (f *Feature) Messages() string {
	var out string
	for _, a := range f.Assessments {
		if a.Message != "" && a.Status == f.Status {
			if out != "" {
				out += "; "
			}
			out += a.Message
		}
	}
	return out
}
