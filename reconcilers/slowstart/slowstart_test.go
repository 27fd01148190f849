package slowstart

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

// A failing call stops the batches: 1, 2, 4, ... calls are made, not all of them.
func TestBatch(t *testing.T) {
	var calls atomic.Int32
	called, _, err := Batch(100, 1, func(int) error {
		if calls.Add(1) > 6 {
			return errors.New("quota exceeded")
		}
		return nil
	})
	// Batches of 1, 2 and 4: the seventh call fails, and no batch of 8 starts.
	if err == nil || called != 7 || calls.Load() != 7 {
		t.Fatalf("called %d, calls %d, err %v; want 7 and the error", called, calls.Load(), err)
	}
	calls.Store(0)
	called, last, err := Batch(100, 1, func(int) error { calls.Add(1); return nil })
	if err != nil || called != 100 || calls.Load() != 100 || last != 37 {
		t.Errorf("called %d, calls %d, last batch %d, err %v; want 100, 100, 37 (after 1+2+4+8+16+32)", called, calls.Load(), last, err)
	}
	called, last, err = Batch(100, 64, func(int) error { return nil })
	if err != nil || called != 100 || last != 36 {
		t.Errorf("starting at 64: called %d, last batch %d, err %v; want 100 in batches of 64 and 36", called, last, err)
	}
}

// Every index is called once; the error returned is the first of the failed batch by index.
func TestBatchIndexesAndFirstError(t *testing.T) {
	var mu sync.Mutex
	var seen []int
	if _, _, err := Batch(10, 0, func(i int) error {
		mu.Lock()
		seen = append(seen, i)
		mu.Unlock()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(seen)
	if !slices.Equal(seen, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
		t.Fatalf("called with %v; want 0..9 once each", seen)
	}
	boom, bang := errors.New("boom"), errors.New("bang")
	called, last, err := Batch(20, 2, func(i int) error {
		switch i { // in the second batch, 2..5
		case 3:
			return boom
		case 4:
			return bang
		}
		return nil
	})
	if called != 6 || last != 4 || err != boom {
		t.Fatalf("Batch = %d, %d, %v; want 6, 4, boom", called, last, err)
	}
}
