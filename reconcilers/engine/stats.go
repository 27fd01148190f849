package engine

import (
	"sync"
	"time"
)

// Stats counts reconciles per reconciler in this replica.
type Stats struct {
	mu   sync.Mutex
	byRc map[string]*ReconcilerStats
}

// ReconcilerStats are the counts of one reconciler.
type ReconcilerStats struct {
	Reconciles int64
	Errors     int64
	Busy       time.Duration
}

func newStats() *Stats { return &Stats{byRc: map[string]*ReconcilerStats{}} }

func (s *Stats) observe(name string, took time.Duration, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.byRc[name]
	if st == nil {
		st = &ReconcilerStats{}
		s.byRc[name] = st
	}
	st.Reconciles++
	st.Busy += took
	if err != nil {
		st.Errors++
	}
}

// Snapshot returns a copy of the counts.
func (s *Stats) Snapshot() map[string]ReconcilerStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]ReconcilerStats, len(s.byRc))
	for k, v := range s.byRc {
		out[k] = *v
	}
	return out
}
