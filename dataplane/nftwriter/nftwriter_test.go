package nftwriter_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/nftables"

	"github.com/logplane/logplane/dataplane/dataplanetest"
	"github.com/logplane/logplane/dataplane/nftwriter"
)

// TestCommitElementsManySets: one batch touching 1,000 sets (a message and
// an acknowledgement each, more than a netlink socket's default receive
// buffer holds) is applied whole, then its deletions too.
func TestCommitElementsManySets(t *testing.T) {
	dataplanetest.RequireNetworking(t)
	ns := dataplanetest.NewNetNS(t, "nftw")
	w, err := nftwriter.New("lpt-writer", ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	const sets = 1000
	tx := w.NewTransaction()
	var script strings.Builder
	script.WriteString("add table ip lpt-writer\n")
	for i := range sets {
		fmt.Fprintf(&script, "add set ip lpt-writer s%d { type ipv4_addr . inet_proto . inet_service ; }\n", i)
	}
	if err := w.Run(t.Context(), tx, script.String()); err != nil {
		t.Fatal(err)
	}
	batch := func(del bool) []nftwriter.SetChange {
		var out []nftwriter.SetChange
		for i := range sets {
			key, err := nftwriter.EncodeFields([]string{fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), "tcp", "8080"})
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, nftwriter.SetChange{Set: fmt.Sprintf("s%d", i), Delete: del, Elems: []nftables.SetElement{{Key: key}}})
		}
		return out
	}
	if err := w.CommitElements(batch(false)); err != nil {
		t.Fatal(err)
	}
	list := func() string {
		out, err := ns.Exec("nft", "list", "table", "ip", "lpt-writer")
		if err != nil {
			t.Fatalf("nft list: %v: %s", err, out)
		}
		return out
	}
	out := list()
	for _, want := range []string{"10.0.0.1 . tcp . 8080", "10.0.3.250 . tcp . 8080"} {
		if !strings.Contains(out, want) {
			t.Fatalf("element %s missing:\n%.2000s", want, out)
		}
	}
	if n := strings.Count(out, "elements = "); n != sets {
		t.Fatalf("%d sets have elements, want %d", n, sets)
	}
	if err := w.CommitElements(batch(true)); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(list(), "elements = "); n != 0 {
		t.Fatalf("%d sets still have elements after the deletions", n)
	}
	if err := nftwriter.DeleteTable(t.Context(), "lpt-writer", ns.Path()); err != nil {
		t.Fatal(err)
	}
	if err := nftwriter.DeleteTable(t.Context(), "lpt-writer", ns.Path()); err != nil {
		t.Fatalf("deleting a table that is gone: %v", err)
	}
}
