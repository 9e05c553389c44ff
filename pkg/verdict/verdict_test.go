package verdict

import (
	"testing"
	"time"
)

func TestRecorderRollsUpAndRoundTrips(t *testing.T) {
	r := NewRecorder("lab")
	r.Begin("b/never", nil)
	r.Begin("a/mixed", map[string]string{"behaviour": "x"})
	r.Assessed("a/mixed", Assessment{Name: "one", Status: Passed})
	r.Assessed("a/mixed", Assessment{Name: "two", Status: Failed, Message: "cause"})
	r.Assessed("c/skipped", Assessment{Name: "one", Status: Skipped, Message: "why"})
	r.Figure("a/mixed", "took", 1500*time.Millisecond)
	r.LabProblem("mongo-1 not Ready")
	path, err := r.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Status{"a/mixed": Failed, "b/never": NotRun, "c/skipped": Skipped}
	for name, s := range want {
		if f := rep.Find(name); f == nil || f.Status != s {
			t.Errorf("%s: %+v, want %s", name, f, s)
		}
	}
	if m := rep.Find("a/mixed").Messages(); m != "cause" {
		t.Errorf("messages %q", m)
	}
	if rep.Find("a/mixed").Figures["took"] != "1.5s" || len(rep.LabProblems) != 1 {
		t.Errorf("figures %v, problems %v", rep.Find("a/mixed").Figures, rep.LabProblems)
	}
}
