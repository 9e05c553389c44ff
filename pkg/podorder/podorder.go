// Package podorder records, from one watch, the order in which a
// StatefulSet's pods are created, become Ready, start terminating and go,
// and judges from that order whether the set was created and removed one
// pod at a time (what OrderedReady promises).
package podorder

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

// What happened to a pod in one watch event. One event can carry several
// (a pod first seen Ready).
type What string

const (
	Created     What = "created"
	Ready       What = "ready"
	Unready     What = "unready"
	Terminating What = "terminating"
	Deleted     What = "deleted"
)

// Event is one step of one pod, numbered in the watch's order.
type Event struct {
	Seq  int
	Pod  string
	UID  string
	What What
	// At is when the suite saw it; Stamp is the API's own time for it (the
	// creation timestamp, the Ready condition's transition time or the
	// deletion timestamp, second resolution), when it has one.
	At    time.Time
	Stamp time.Time
}

func (e Event) String() string {
	s := fmt.Sprintf("#%d %s %s at %s", e.Seq, e.Pod, e.What, e.At.Format("15:04:05.000"))
	if !e.Stamp.IsZero() {
		s += fmt.Sprintf(" (API time %s)", e.Stamp.Format("15:04:05"))
	}
	return s
}

// Recorder watches the pods of a namespace matching a selector.
type Recorder struct {
	mu     sync.Mutex
	events []Event
	last   map[string]podState
	err    error
	cancel context.CancelFunc
	done   chan struct{}
	// Notify, if set before Start, is called with each event as it is seen.
	notify chan Event
}

type podState struct {
	uid             string
	ready, deleting bool
}

// Start lists the pods (their state is the baseline, not events) and
// watches from there until Stop.
func Start(ctx context.Context, cs kubernetes.Interface, namespace, selector string) (*Recorder, error) {
	list, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	w, err := cs.CoreV1().Pods(namespace).Watch(ctx, metav1.ListOptions{LabelSelector: selector, ResourceVersion: list.ResourceVersion})
	if err != nil {
		cancel()
		return nil, err
	}
	r := &Recorder{last: map[string]podState{}, cancel: cancel, done: make(chan struct{}), notify: make(chan Event, 256)}
	for i := range list.Items {
		p := &list.Items[i]
		r.last[p.Name] = state(p)
	}
	go func() {
		defer close(r.done)
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.ResultChan():
				if !ok {
					r.fail(fmt.Errorf("the pod watch closed early"))
					return
				}
				if ev.Type == watch.Error {
					r.fail(fmt.Errorf("pod watch error: %v", ev.Object))
					return
				}
				if p, ok := ev.Object.(*corev1.Pod); ok {
					r.observe(ev.Type, p, time.Now())
				}
			}
		}
	}()
	return r, nil
}

func (r *Recorder) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
	}
}

func state(p *corev1.Pod) podState {
	ready, _ := readyCondition(p)
	return podState{uid: string(p.UID), ready: ready, deleting: p.DeletionTimestamp != nil}
}

func readyCondition(p *corev1.Pod) (bool, time.Time) {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue, c.LastTransitionTime.Time
		}
	}
	return false, time.Time{}
}

// Observe turns one watch event into the steps it shows (exported for tests
// through Replay).
func (r *Recorder) observe(t watch.EventType, p *corev1.Pod, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	prev, known := r.last[p.Name]
	if known && prev.uid != string(p.UID) {
		// A new pod under an old name: the old one's end was missed.
		known, prev = false, podState{}
	}
	add := func(w What, stamp time.Time) {
		e := Event{Seq: len(r.events) + 1, Pod: p.Name, UID: string(p.UID), What: w, At: at, Stamp: stamp}
		r.events = append(r.events, e)
		select {
		case r.notify <- e:
		default:
		}
	}
	if t == watch.Deleted {
		add(Deleted, time.Time{})
		delete(r.last, p.Name)
		return
	}
	now := state(p)
	if !known {
		add(Created, p.CreationTimestamp.Time)
	}
	_, since := readyCondition(p)
	if now.ready && !prev.ready {
		add(Ready, since)
	}
	if !now.ready && prev.ready {
		add(Unready, since)
	}
	if now.deleting && !prev.deleting {
		add(Terminating, p.DeletionTimestamp.Time)
	}
	r.last[p.Name] = now
}

// Events are the steps seen so far, and the watch's error if it ended.
func (r *Recorder) Events() ([]Event, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...), r.err
}

// Next waits for the next step, in order, or ctx's end.
func (r *Recorder) Next(ctx context.Context) (Event, error) {
	select {
	case e := <-r.notify:
		return e, nil
	case <-ctx.Done():
		return Event{}, ctx.Err()
	}
}

// WaitFor waits until a step of pod satisfies what, returning it; steps seen
// before the call count.
func (r *Recorder) WaitFor(ctx context.Context, pod string, what What) (Event, error) {
	for {
		events, err := r.Events()
		for _, e := range events {
			if e.Pod == pod && e.What == what {
				return e, nil
			}
		}
		if err != nil {
			return Event{}, err
		}
		if _, err := r.Next(ctx); err != nil {
			return Event{}, fmt.Errorf("%s was not %s: %w", pod, what, err)
		}
	}
}

// Stop ends the watch.
func (r *Recorder) Stop() {
	r.cancel()
	<-r.done
}

// Find returns the first step of pod of the given kind, if any.
func Find(events []Event, pod string, what What) (Event, bool) {
	for _, e := range events {
		if e.Pod == pod && e.What == what {
			return e, true
		}
	}
	return Event{}, false
}

// CreatedAfterReady fails unless later was created only after earlier was
// seen Ready, in the watch's order.
func CreatedAfterReady(events []Event, earlier, later string) error {
	created, ok := Find(events, later, Created)
	if !ok {
		return fmt.Errorf("%s was never created", later)
	}
	ready, ok := Find(events, earlier, Ready)
	if !ok {
		return fmt.Errorf("%s was created (%s) while %s was never Ready", later, created, earlier)
	}
	if created.Seq < ready.Seq {
		return fmt.Errorf("%s was created before %s was Ready (%s; %s)", later, earlier, created, ready)
	}
	return nil
}

// RemovedBefore fails unless higher was gone before lower began to
// terminate, in the watch's order.
func RemovedBefore(events []Event, higher, lower string) error {
	gone, ok := Find(events, higher, Deleted)
	if !ok {
		return fmt.Errorf("%s was never removed", higher)
	}
	term, ok := Find(events, lower, Terminating)
	if !ok {
		if deleted, ok := Find(events, lower, Deleted); ok {
			term = deleted
		} else {
			return fmt.Errorf("%s was never removed", lower)
		}
	}
	if term.Seq < gone.Seq {
		return fmt.Errorf("%s began terminating before %s was gone (%s; %s)", lower, higher, term, gone)
	}
	return nil
}

// NoneCreated fails if any step in events is a creation.
func NoneCreated(events []Event) error {
	for _, e := range events {
		if e.What == Created {
			return fmt.Errorf("%s was created (%s)", e.Pod, e)
		}
	}
	return nil
}

// Replay feeds recorded watch events to a fresh recorder, for tests.
func Replay(items []ReplayItem) []Event {
	r := &Recorder{last: map[string]podState{}, notify: make(chan Event, len(items)*4+1)}
	for _, it := range items {
		r.observe(it.Type, it.Pod, it.At)
	}
	events, _ := r.Events()
	return events
}

// ReplayItem is one watch event for Replay.
type ReplayItem struct {
	Type watch.EventType
	Pod  *corev1.Pod
	At   time.Time
}
