package gobuild

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// The key of the same sources is the same wherever the checkout is and
// however its path is spelled (CI clones to a new place every run).
func TestKeyIgnoresWhereTheCheckoutIs(t *testing.T) {
	ctx := context.Background()
	key := func(root string) string {
		k, err := Key(ctx, Spec{Name: "x", ModuleDir: root, Packages: []string{"./images/probe"}, LDFlags: "-s -w",
			Sources: []string{filepath.Join(root, "images/probe")}, LocalDeps: true})
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	abs, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	copyDir := filepath.Join(t.TempDir(), "elsewhere")
	for _, p := range []string{"go.mod", "go.sum", "images/probe/main.go"} {
		data, err := os.ReadFile(filepath.Join(abs, p))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(copyDir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(copyDir, p), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if a, b, c := key("../.."), key(abs), key(copyDir); a != b || b != c {
		t.Fatalf("keys differ by checkout path: %s %s %s", a, b, c)
	}
}
