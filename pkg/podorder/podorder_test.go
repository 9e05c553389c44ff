package podorder

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
)

func pod(name string, ready, deleting bool) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(name + "-uid")}}
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}
	if deleting {
		now := metav1.Now()
		p.DeletionTimestamp = &now
	}
	return p
}

func replay(steps ...ReplayItem) []Event { return Replay(steps) }

func step(t watch.EventType, p *corev1.Pod) ReplayItem {
	return ReplayItem{Type: t, Pod: p, At: time.Now()}
}

// OrderedReady: mongo-1 appears after mongo-0 is Ready; removal from the
// top: mongo-1 begins terminating only after mongo-2 is gone.
func TestOrderedSequencePasses(t *testing.T) {
	ev := replay(
		step(watch.Added, pod("mongo-0", false, false)),
		step(watch.Modified, pod("mongo-0", true, false)),
		step(watch.Added, pod("mongo-1", false, false)),
		step(watch.Modified, pod("mongo-1", true, false)),
		step(watch.Added, pod("mongo-2", true, false)),
		step(watch.Modified, pod("mongo-2", true, true)),
		step(watch.Deleted, pod("mongo-2", true, true)),
		step(watch.Modified, pod("mongo-1", true, true)),
		step(watch.Deleted, pod("mongo-1", true, true)),
	)
	if err := CreatedAfterReady(ev, "mongo-0", "mongo-1"); err != nil {
		t.Error(err)
	}
	if err := CreatedAfterReady(ev, "mongo-1", "mongo-2"); err != nil {
		t.Error(err)
	}
	if err := RemovedBefore(ev, "mongo-2", "mongo-1"); err != nil {
		t.Error(err)
	}
}

// Parallel: both pods appear before either is Ready, and both begin
// terminating at once.
func TestParallelSequenceFails(t *testing.T) {
	ev := replay(
		step(watch.Added, pod("mongo-0", false, false)),
		step(watch.Added, pod("mongo-1", false, false)),
		step(watch.Modified, pod("mongo-0", true, false)),
		step(watch.Modified, pod("mongo-1", true, false)),
		step(watch.Modified, pod("mongo-1", true, true)),
		step(watch.Modified, pod("mongo-0", true, true)),
		step(watch.Deleted, pod("mongo-0", true, true)),
		step(watch.Deleted, pod("mongo-1", true, true)),
	)
	err := CreatedAfterReady(ev, "mongo-0", "mongo-1")
	if err == nil || !strings.Contains(err.Error(), "mongo-1 was created before mongo-0 was Ready") {
		t.Errorf("creation order: %v", err)
	}
	if err := RemovedBefore(ev, "mongo-1", "mongo-0"); err == nil {
		t.Error("mongo-0 terminated before mongo-1 was gone, yet RemovedBefore passed")
	}
	if err := NoneCreated(ev); err == nil {
		t.Error("NoneCreated passed on creations")
	}
	if err := CreatedAfterReady(ev, "mongo-1", "mongo-5"); err == nil {
		t.Error("a pod never created passed")
	}
}

// A pod first seen Ready yields both steps, in order; a new pod under an
// old name is a new creation.
func TestObserveSteps(t *testing.T) {
	again := pod("mongo-0", false, false)
	again.UID = "other"
	ev := replay(
		step(watch.Added, pod("mongo-0", true, false)),
		step(watch.Modified, again),
	)
	var got []string
	for _, e := range ev {
		got = append(got, string(e.What))
	}
	if strings.Join(got, ",") != "created,ready,created" {
		t.Errorf("steps %v", got)
	}
}
