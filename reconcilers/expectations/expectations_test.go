package expectations

import (
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/logplane/logplane/eventlog"
)

var (
	set = eventlog.Key{Group: "apps", Resource: "replicasets", Namespace: "ns", Name: "web"}
	p1  = eventlog.Key{Resource: "pods", Namespace: "ns", Name: "web-1"}
	p2  = eventlog.Key{Resource: "pods", Namespace: "ns", Name: "web-2"}
)

func TestCounts(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	e := New(clk)
	if !e.Satisfied(set) {
		t.Fatal("nothing expected: want satisfied")
	}
	e.Set(set, 2, 1)
	e.CreationObserved(set)
	e.DeletionObserved(set, p1)
	if e.Satisfied(set) {
		t.Fatal("one creation still expected: want unsatisfied")
	}
	e.Lower(set, 1, 0)
	if !e.Satisfied(set) {
		t.Fatal("all seen or taken back: want satisfied")
	}
}

func TestTrackedDeletions(t *testing.T) {
	e := New(clocktesting.NewFakeClock(time.Unix(1000, 0)))
	e.ExpectDeletions(set, []eventlog.Key{p1, p2})
	e.DeletionObserved(set, p1)
	e.DeletionObserved(set, p1)
	e.DeletionObserved(set, eventlog.Key{Resource: "pods", Namespace: "ns", Name: "other"})
	if e.Satisfied(set) {
		t.Fatal("p2's deletion not seen: want unsatisfied")
	}
	e.DeletionObserved(set, p2)
	if !e.Satisfied(set) {
		t.Fatal("both deletions seen: want satisfied")
	}
}

func TestTimeoutAndDelete(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	e := New(clk)
	e.ExpectCreations(set, 3)
	clk.Step(Timeout)
	if e.Satisfied(set) {
		t.Fatal("at the timeout: want unsatisfied")
	}
	clk.Step(time.Second)
	if !e.Satisfied(set) {
		t.Fatal("past the timeout: want satisfied")
	}
	e.ExpectCreations(set, 1)
	e.Delete(set)
	if !e.Satisfied(set) {
		t.Fatal("deleted: want satisfied")
	}
}
