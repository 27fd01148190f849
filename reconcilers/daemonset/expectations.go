package daemonset

import (
	"sync"
	"time"

	"github.com/logplane/logplane/eventlog"
)

// expectationsTTL bounds how long a reconcile waits for the creations and deletions it asked
// for to show in the projection before acting again anyway (kube-controller-manager's
// ExpectationsTimeout).
const expectationsTTL = 5 * time.Minute

// expectations count, per daemon set, the pod creations and deletions asked for and not seen
// yet, as Kubernetes' ControllerExpectations: the projection lags the log, and a reconcile
// that counted pods before its own writes came back would write them twice.
type expectations struct {
	now func() time.Time

	mu sync.Mutex
	m  map[eventlog.Key]*expectation
}

type expectation struct {
	adds, dels int
	at         time.Time
}

func newExpectations(now func() time.Time) *expectations {
	return &expectations{now: now, m: map[eventlog.Key]*expectation{}}
}

// satisfied reports whether everything expected of set has been seen (or expired).
func (e *expectations) satisfied(set eventlog.Key) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	x := e.m[set]
	return x == nil || (x.adds <= 0 && x.dels <= 0) || e.now().Sub(x.at) > expectationsTTL
}

func (e *expectations) set(set eventlog.Key, adds, dels int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.m[set] = &expectation{adds: adds, dels: dels, at: e.now()}
}

// lower takes back creations and deletions that were not made.
func (e *expectations) lower(set eventlog.Key, adds, dels int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x := e.m[set]; x != nil {
		x.adds -= adds
		x.dels -= dels
	}
}

func (e *expectations) creationObserved(set eventlog.Key) { e.lower(set, 1, 0) }
func (e *expectations) deletionObserved(set eventlog.Key) { e.lower(set, 0, 1) }

func (e *expectations) forget(set eventlog.Key) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.m, set)
}
