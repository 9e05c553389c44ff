package tests

// The game's state, as the lesson shows it: high scores written through the
// game live on mongo-0's volume, come back after mongo-0 is deleted and
// after the whole set is scaled away and back; and, where the database is a
// replica set, mongo-1 reads a copy.

import (
	"context"
	"fmt"
	"testing"
	"time"

	"sigs.k8s.io/e2e-framework/pkg/envconf"

	"github.com/stateful-conformance/stateful-conformance/pkg/labcheck"
)

// scoreBatch is how many high scores the feature writes: the game lists the
// top 10, and each of these outscores anything else the suite writes.
const scoreBatch = 10

func TestHighScoresSurvive(t *testing.T) {
	f := behaviour("app/highscores-survive", "highscores-survive", true)
	prefix := "survivor-" + envconf.RandomName("", 6)
	var names []string
	for i := 0; i < scoreBatch; i++ {
		names = append(names, fmt.Sprintf("%s-%02d", prefix, i))
	}
	lost := func(ctx context.Context, t *testing.T, cfg *envconf.Config, when string, found map[string]bool, err error) {
		t.Helper()
		var missing []string
		for _, n := range names {
			if !found[n] {
				missing = append(missing, n)
			}
		}
		f.figure(t, "scores found "+when, fmt.Sprintf("%d of %d", len(names)-len(missing), len(names)))
		if len(missing) == 0 {
			return
		}
		failure := fmt.Sprintf("%s, the game lists %d of %d acknowledged scores", when, len(names)-len(missing), len(names))
		if err != nil {
			failure += fmt.Sprintf(" (its last answer: %v)", err)
		}
		l := liveLab(ctx, t, cfg)
		fatalf(t, "%s", labcheck.Explain(failure, l.ClaimCause(), l.WriterCause()))
	}
	f.Assess(fmt.Sprintf("a batch of %d high scores posted through the game is on mongo-0, and on no other database pod", scoreBatch), func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
		g := openGame(ctx, t, cfg)
		for i, n := range names {
			check(t, g.postScore(ctx, n, 900000000+i))
		}
		f.figure(t, "scores written", len(names))
		on0, err := dialDB(ctx, t, cfg, dbPod(0)).HighScores(ctx, names)
		check(t, err)
		on1, err := dialDB(ctx, t, cfg, dbPod(1)).HighScores(ctx, names)
		check(t, err)
		if len(on0) != len(names) || len(on1) != 0 {
			fatalf(t, "%s", labcheck.Explain(fmt.Sprintf("of %d acknowledged scores, %d are on mongo-0 and %d on mongo-1; only mongo-0 may write", len(names), len(on0), len(on1)), liveLab(ctx, t, cfg).WriterCause()))
		}
		return ctx
	}).
		Assess(fmt.Sprintf("after mongo-0 is deleted, the game lists every acknowledged score again (within %s; the gap is measured)", gameBackBound), func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			g := openGame(ctx, t, cfg)
			if found, err := g.listed(ctx, names); err != nil || len(found) != len(names) {
				lost(ctx, t, cfg, "before mongo-0 is deleted", found, err)
			}
			start := time.Now()
			_, _, took, err := replacePod(ctx, clientset(t, cfg), dbPod(0), podReadyBound)
			check(t, err)
			f.figure(t, "mongo-0 deleted to Ready again", took)
			gap, found, err := g.untilListed(ctx, names, gameBackBound)
			f.figure(t, "scores unavailable after mongo-0 was deleted", gapSince(start, gap))
			lost(ctx, t, cfg, "after mongo-0 came back", found, err)
			return ctx
		}).
		Assess(fmt.Sprintf("after the set is scaled to 0 and back to 2, the game lists every score again (within %s)", gameBackBound), func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			cs := clientset(t, cfg)
			check(t, scaleStatefulSet(ctx, cs, 0, podGoneBound))
			check(t, scaleStatefulSet(ctx, cs, 2, podReadyBound))
			g := openGame(ctx, t, cfg)
			_, found, err := g.untilListed(ctx, names, gameBackBound)
			lost(ctx, t, cfg, "after scaling to 0 and back", found, err)
			return ctx
		}).
		Teardown(func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			restoreLab(ctx, t, cfg, suite.dbReplicas, suite.frontendReplicas)
			return ctx
		}).Test(t)
}

// gapSince is the unavailability window: the time the game could not list
// the scores, measured from the deletion when the first list after it
// already failed.
func gapSince(deleted time.Time, gap time.Duration) time.Duration {
	if gap == 0 {
		return 0
	}
	if since := time.Since(deleted); gap > since {
		return since
	}
	return gap
}

func TestReplication(t *testing.T) {
	f := behaviour("mongo/replication", "replication", false)
	f.Assess("a score written to the primary mongo-0 is read from mongo-1", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
		primary := dialDB(ctx, t, cfg, dbPod(0))
		set, err := primary.ReplicaSet(ctx)
		check(t, err)
		if set == "" {
			skipf(t, "the lab's database is standalone: mongo-0 answers hello with no replica set name, so mongo-1 holds no copy to read")
		}
		name := "replicated-" + envconf.RandomName("", 6)
		check(t, openGame(ctx, t, cfg).postScore(ctx, name, 1))
		secondary := dialDB(ctx, t, cfg, dbPod(1))
		const bound = 30 * time.Second
		start := time.Now()
		for i := 0; time.Since(start) < bound && i < 300; i++ {
			found, err := secondary.HighScores(ctx, []string{name})
			if err == nil && found[name] {
				f.figure(t, "replication lag (upper bound)", time.Since(start))
				return ctx
			}
			time.Sleep(100 * time.Millisecond)
		}
		fatalf(t, "replica set %s: a score written through the game is not on mongo-1 within %s", set, bound)
		return ctx
	}).Test(t)
}
