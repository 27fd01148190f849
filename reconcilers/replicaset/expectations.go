package replicaset

import (
	"sync"
	"time"

	"github.com/logplane/logplane/eventlog"
)

// expectationsTTL bounds how long a reconciler waits for the creations and deletions it made to
// show in the projection before it acts again anyway (as kube-controller-manager's
// ExpectationsTimeout).
const expectationsTTL = 5 * time.Minute

// expectations remember, per replica set, the pod creations and deletions it asked for and has
// not seen come back yet, so that a reconcile that runs before they do does not ask again: the
// projection lags the log, and counting pods in it right after creating some would create them
// twice.
type expectations struct {
	now func() time.Time

	mu sync.Mutex
	m  map[eventlog.Key]*expectation
}

type expectation struct {
	adds int
	dels map[eventlog.Key]bool // pods whose deletion was asked for
	at   time.Time
}

func newExpectations(now func() time.Time) *expectations {
	return &expectations{now: now, m: map[eventlog.Key]*expectation{}}
}

// satisfied reports whether everything expected for set has been seen (or expired).
func (e *expectations) satisfied(set eventlog.Key) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	x := e.m[set]
	if x == nil {
		return true
	}
	if x.adds <= 0 && len(x.dels) == 0 {
		return true
	}
	return e.now().Sub(x.at) > expectationsTTL
}

func (e *expectations) expectCreations(set eventlog.Key, n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.m[set] = &expectation{adds: n, at: e.now()}
}

func (e *expectations) expectDeletions(set eventlog.Key, pods []eventlog.Key) {
	e.mu.Lock()
	defer e.mu.Unlock()
	dels := make(map[eventlog.Key]bool, len(pods))
	for _, p := range pods {
		dels[p] = true
	}
	e.m[set] = &expectation{dels: dels, at: e.now()}
}

func (e *expectations) creationObserved(set eventlog.Key) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x := e.m[set]; x != nil && x.adds > 0 {
		x.adds--
	}
}

func (e *expectations) deletionObserved(set, pod eventlog.Key) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x := e.m[set]; x != nil {
		delete(x.dels, pod)
	}
}

func (e *expectations) forget(set eventlog.Key) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.m, set)
}
