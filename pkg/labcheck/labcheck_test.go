package labcheck

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/stateful-conformance/stateful-conformance/pkg/manifest"
)

// loadDir puts the objects of a lab directory into a fake clientset, as the
// cluster would hold them after the suite deployed it, and loads the lab.
func loadDir(t *testing.T, dir string) *Lab {
	t.Helper()
	objs, err := manifest.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var typed []runtime.Object
	for _, o := range objs {
		obj, err := scheme.Scheme.New(o.GroupVersionKind())
		if err != nil {
			t.Fatalf("%s: %v", o.GetKind(), err)
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, obj); err != nil {
			t.Fatal(err)
		}
		typed = append(typed, obj)
	}
	l, err := Load(context.Background(), fake.NewSimpleClientset(typed...), Lesson("pacman"))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func allCauses(l *Lab) map[string]string {
	return map[string]string{
		"dns": l.DNSCause(), "order": l.OrderCause(), "claim": l.ClaimCause(), "retention": l.RetentionCause(),
		"ingress": l.IngressCause(), "scale": l.ScaleCause(10), "writer": l.WriterCause(),
	}
}

// The project's own lab is as the lesson wants it: no cause is found.
func TestLessonLabHasNoCause(t *testing.T) {
	for what, cause := range allCauses(loadDir(t, "../../manifests/lab")) {
		if cause != "" {
			t.Errorf("%s: %s", what, cause)
		}
	}
}

// Each broken lab of tests/testdata/broken yields the cause its case
// expects, from a cause-finder of its expected feature.
func TestBrokenLabsHaveTheirCause(t *testing.T) {
	which := map[string][]string{
		"statefulset/ordered-creation": {"order"},
		"statefulset/fixed-dns":        {"dns"},
		"statefulset/claims-retained":  {"claim", "retention"},
		"ingress/host-routing":         {"ingress"},
		"frontend/scale-to-10":         {"scale"},
		"app/highscores-survive":       {"claim", "writer"},
	}
	dirs, err := filepath.Glob("../../tests/testdata/broken/*")
	if err != nil || len(dirs) < 8 {
		t.Fatalf("want at least 8 broken labs, found %d (%v)", len(dirs), err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			var want struct{ Feature, Cause string }
			data, err := os.ReadFile(filepath.Join(dir, "expected.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(data, &want); err != nil {
				t.Fatal(err)
			}
			causes := allCauses(loadDir(t, dir))
			finders, ok := which[want.Feature]
			if !ok {
				t.Fatalf("no cause-finder for feature %s", want.Feature)
			}
			var got []string
			for _, f := range finders {
				got = append(got, causes[f])
			}
			if joined := strings.Join(got, "; "); !strings.Contains(joined, want.Cause) {
				t.Fatalf("%s's causes %q do not name %q", want.Feature, joined, want.Cause)
			}
		})
	}
}

func TestExplain(t *testing.T) {
	if got := Explain("x failed", "", ""); !strings.Contains(got, "the cluster is at fault") {
		t.Errorf("no cause: %q", got)
	}
	if got := Explain("x failed", "", "B cause", "A cause"); got != "x failed: A cause; B cause" {
		t.Errorf("causes: %q", got)
	}
}
