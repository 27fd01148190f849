// Package slowstart makes many calls (pod creations) in batches that start small and double
// while every call succeeds, as Kubernetes' slowStartBatch (pkg/controller/replicaset, and the
// daemon set controller's syncNodes): an owner that cannot create pods (a quota, a bad template)
// fails once rather than once per pod.
package slowstart

import "sync"

// Batch calls fn(i) for i from 0 to count-1, in batches that start at initial (at least 1) and
// double while every call of a batch succeeds, the calls of a batch running concurrently. It
// stops after the first batch with a failed call and returns how many calls it made, the size
// of the last batch, and the first error of that batch (in the order of i).
func Batch(count, initial int, fn func(i int) error) (called, last int, err error) {
	for batch := min(count, max(initial, 1)); batch > 0; batch = min(2*batch, count-called) {
		last = batch
		errs := make([]error, batch)
		var wg sync.WaitGroup
		for j := range batch {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				errs[j] = fn(i)
			}(called + j)
		}
		wg.Wait()
		called += batch
		for _, err := range errs {
			if err != nil {
				return called, last, err
			}
		}
	}
	return called, last, nil
}
