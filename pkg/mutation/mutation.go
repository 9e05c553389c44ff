// Package mutation proves the suite can fail: each case is a broken variant
// of the lab that breaks one behaviour, with the feature that must catch it
// and the words its cause must contain. Judge compares a run's verdicts
// with what the case expects.
package mutation

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/stateful-conformance/stateful-conformance/pkg/verdict"
)

// ExpectFile, in a case's directory, says what the case must produce.
const ExpectFile = "expected.json"

// Expect is what a broken lab must make the suite say.
type Expect struct {
	// Breaks says in a sentence what the case breaks.
	Breaks string `json:"breaks"`
	// Feature must fail, with a message containing Cause.
	Feature string `json:"feature"`
	Cause   string `json:"cause"`
	// MayAlsoFail are other features the break touches, each with why;
	// every feature not named here must pass (or be skipped as on the
	// correct lab).
	MayAlsoFail map[string]string `json:"mayAlsoFail,omitempty"`
}

// Case is one broken lab.
type Case struct {
	Name string
	Dir  string
	Expect
}

// Load reads every case under dir (one directory each with ExpectFile).
func Load(dir string) ([]Case, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []Case
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		c := Case{Name: e.Name(), Dir: filepath.Join(dir, e.Name())}
		data, err := os.ReadFile(filepath.Join(c.Dir, ExpectFile))
		if err != nil {
			return nil, fmt.Errorf("case %s: %w", c.Name, err)
		}
		if err := json.Unmarshal(data, &c.Expect); err != nil {
			return nil, fmt.Errorf("case %s: %s: %w", c.Name, ExpectFile, err)
		}
		if c.Feature == "" || c.Cause == "" {
			return nil, fmt.Errorf("case %s: %s must name a feature and a cause", c.Name, ExpectFile)
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Result is a case's judgement.
type Result struct {
	Case   Case
	Caught bool
	// Verdict and Message are what the expected feature said.
	Verdict verdict.Status
	Message string
	// Problems say why the case is not caught as expected.
	Problems []string
	// AlsoFailed are the touched features that failed, as allowed.
	AlsoFailed []string
}

// Judge decides whether rep, a run on the case's lab, caught it: the
// expected feature failed naming the cause, and every feature the case does
// not touch passed (or was skipped as on the correct lab: baseline names
// the features skipped there).
func Judge(c Case, rep *verdict.Report, baselineSkipped map[string]bool) Result {
	r := Result{Case: c}
	f := rep.Find(c.Feature)
	switch {
	case f == nil:
		r.Problems = append(r.Problems, fmt.Sprintf("feature %s did not run", c.Feature))
	default:
		r.Verdict, r.Message = f.Status, f.Messages()
		if f.Status != verdict.Failed {
			r.Problems = append(r.Problems, fmt.Sprintf("feature %s %s", c.Feature, f.Status))
		} else if !strings.Contains(r.Message, c.Cause) {
			r.Problems = append(r.Problems, fmt.Sprintf("feature %s failed without naming the cause %q", c.Feature, c.Cause))
		}
	}
	for _, other := range rep.Features {
		if other.Name == c.Feature {
			continue
		}
		if _, touched := c.MayAlsoFail[other.Name]; touched {
			if other.Status == verdict.Failed {
				r.AlsoFailed = append(r.AlsoFailed, other.Name)
			}
			continue
		}
		switch {
		case other.Status == verdict.Passed:
		case other.Status == verdict.Skipped && baselineSkipped[other.Name]:
		default:
			r.Problems = append(r.Problems, fmt.Sprintf("untouched feature %s %s: %s", other.Name, other.Status, other.Messages()))
		}
	}
	r.Caught = len(r.Problems) == 0
	return r
}

// Markdown renders results as the table of docs/mutation.md.
func Markdown(results []Result) string {
	var b strings.Builder
	b.WriteString("| case | breaks | expected feature | verdict | message | also failed (allowed) |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- |\n")
	for _, r := range results {
		v := "caught"
		if !r.Caught {
			v = "NOT CAUGHT: " + strings.Join(r.Problems, "; ")
		}
		also := strings.Join(r.AlsoFailed, ", ")
		if also == "" {
			also = "none"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s (%s) | %s | %s |\n", r.Case.Name, cell(r.Case.Breaks), r.Case.Feature, v, r.Verdict, cell(r.Message), also)
	}
	return b.String()
}

func cell(s string) string {
	return strings.NewReplacer("|", "\\|", "\n", " ").Replace(s)
}
