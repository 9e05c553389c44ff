package mutation

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stateful-conformance/stateful-conformance/pkg/verdict"
)

func report(fs ...*verdict.Feature) *verdict.Report { return &verdict.Report{Features: fs} }

func feature(name string, s verdict.Status, msg string) *verdict.Feature {
	return &verdict.Feature{Name: name, Status: s, Assessments: []verdict.Assessment{{Name: "a", Status: s, Message: msg}}}
}

func TestJudge(t *testing.T) {
	c := Case{Name: "c", Expect: Expect{Feature: "statefulset/fixed-dns", Cause: "has a cluster IP",
		MayAlsoFail: map[string]string{"app/highscores-survive": "no database"}}}
	skippedOnCorrectLab := map[string]bool{"mongo/replication": true}
	for _, tc := range []struct {
		name   string
		rep    *verdict.Report
		caught bool
		why    string
	}{
		{"caught", report(
			feature("statefulset/fixed-dns", verdict.Failed, "mongo-0.mongo does not resolve: Service mongo has a cluster IP (10.96.1.1)"),
			feature("app/highscores-survive", verdict.Failed, "lost"),
			feature("mongo/replication", verdict.Skipped, "standalone"),
			feature("storage/default-class", verdict.Passed, "")), true, ""},
		{"expected feature passed", report(feature("statefulset/fixed-dns", verdict.Passed, "")), false, "passed"},
		{"wrong cause", report(feature("statefulset/fixed-dns", verdict.Failed, "timeout")), false, "without naming the cause"},
		{"untouched feature failed", report(
			feature("statefulset/fixed-dns", verdict.Failed, "Service mongo has a cluster IP"),
			feature("storage/default-class", verdict.Failed, "x")), false, "untouched feature storage/default-class"},
		{"untouched feature skipped unlike the correct lab", report(
			feature("statefulset/fixed-dns", verdict.Failed, "Service mongo has a cluster IP"),
			feature("storage/snapshot-restore", verdict.Skipped, "no API")), false, "untouched feature storage/snapshot-restore skipped"},
		{"feature did not run", report(), false, "did not run"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Judge(c, tc.rep, skippedOnCorrectLab)
			if r.Caught != tc.caught || !strings.Contains(strings.Join(r.Problems, "; "), tc.why) {
				t.Errorf("caught %v, problems %v; want caught %v with %q", r.Caught, r.Problems, tc.caught, tc.why)
			}
		})
	}
}

// The repository's cases load, at least eight, each naming a feature and
// a cause.
func TestLoadRepositoryCases(t *testing.T) {
	cases, err := Load(filepath.Join("..", "..", "tests", "testdata", "broken"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 8 {
		t.Fatalf("%d cases, want at least 8", len(cases))
	}
	md := Markdown([]Result{{Case: cases[0], Caught: true, Verdict: verdict.Failed, Message: "a | b"}})
	if !strings.Contains(md, `a \| b`) {
		t.Errorf("markdown does not escape cells: %s", md)
	}
}
