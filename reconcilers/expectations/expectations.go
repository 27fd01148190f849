// Package expectations remembers, per owner (a ReplicaSet, a DaemonSet, a Job), the pod
// creations and deletions a reconciler asked for and has not seen come back from the log yet, as
// Kubernetes' ControllerExpectations and UIDTrackingControllerExpectations (pkg/controller): the
// projection lags the log, and a reconcile that counted pods before its own writes came back
// would write them twice.
package expectations

import (
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/logplane/logplane/eventlog"
)

// Timeout bounds how long a reconciler waits for the creations and deletions it asked for to
// show before it acts again anyway (kube-controller-manager's ExpectationsTimeout).
const Timeout = 5 * time.Minute

// Expectations are the creations and deletions expected, per owner. The zero value is not
// usable; use New.
type Expectations struct {
	clock clock.PassiveClock

	mu sync.Mutex
	m  map[eventlog.Key]*record
}

type record struct {
	adds, dels int
	pods       map[eventlog.Key]bool // with ExpectDeletions: the pods whose deletion is awaited
	at         time.Time
}

// New returns empty expectations, timed by clk (the engine's clock).
func New(clk clock.PassiveClock) *Expectations {
	return &Expectations{clock: clk, m: map[eventlog.Key]*record{}}
}

// Satisfied reports whether everything expected of owner has been seen, or was asked for more
// than Timeout ago, or nothing is expected.
func (e *Expectations) Satisfied(owner eventlog.Key) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	x := e.m[owner]
	return x == nil || (x.adds <= 0 && x.dels <= 0) || e.clock.Since(x.at) > Timeout
}

// Set expects adds creations and dels deletions of owner's pods, replacing what was expected.
func (e *Expectations) Set(owner eventlog.Key, adds, dels int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.m[owner] = &record{adds: adds, dels: dels, at: e.clock.Now()}
}

// ExpectCreations expects n creations, replacing what was expected.
func (e *Expectations) ExpectCreations(owner eventlog.Key, n int) { e.Set(owner, n, 0) }

// ExpectDeletions expects the deletion of the given pods, replacing what was expected; only
// their deletions count (DeletionObserved of another pod is ignored), as Kubernetes'
// UIDTrackingControllerExpectations.
func (e *Expectations) ExpectDeletions(owner eventlog.Key, pods []eventlog.Key) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x := &record{pods: make(map[eventlog.Key]bool, len(pods)), at: e.clock.Now()}
	for _, p := range pods {
		x.pods[p] = true
	}
	x.dels = len(x.pods)
	e.m[owner] = x
}

// Lower takes back creations and deletions that were not made.
func (e *Expectations) Lower(owner eventlog.Key, adds, dels int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x := e.m[owner]; x != nil {
		x.adds -= adds
		x.dels -= dels
	}
}

// CreationObserved counts one of owner's expected creations as seen.
func (e *Expectations) CreationObserved(owner eventlog.Key) { e.Lower(owner, 1, 0) }

// DeletionObserved counts the deletion of pod as seen: one of owner's expected deletions, or,
// after ExpectDeletions, pod's own.
func (e *Expectations) DeletionObserved(owner, pod eventlog.Key) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x := e.m[owner]
	if x == nil {
		return
	}
	if x.pods != nil {
		if !x.pods[pod] {
			return
		}
		delete(x.pods, pod)
	}
	x.dels--
}

// Delete forgets what was expected of owner (an owner that is gone).
func (e *Expectations) Delete(owner eventlog.Key) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.m, owner)
}
