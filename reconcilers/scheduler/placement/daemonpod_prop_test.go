package placement_test

import (
	"fmt"
	"testing"

	"pgregory.net/rapid"

	"github.com/logplane/logplane/reconcilers/scheduler/placement"
)

// TestPropDaemonPodGoesToItsNode checks that a pod whose required node affinity is
// `matchFields metadata.name In [n]` (how DaemonSet pods are placed) goes to n whenever it
// fits there, and nowhere else.
func TestPropDaemonPodGoesToItsNode(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		count := rapid.IntRange(1, 8).Draw(t, "nodes")
		var nodes []*placement.Node
		for i := range count {
			n := genNode(i).Draw(t, fmt.Sprintf("node%d", i))
			nodes = append(nodes, placement.NewNode(n.Name, n))
		}
		target := fmt.Sprintf("node-%d", rapid.IntRange(0, count).Draw(t, "target")) // node-<count> does not exist
		p := genPod(0).Draw(t, "pod")
		onNode(target)(p)
		d := placement.Place(nodes, nil, placement.NewPod(p))
		if d.Node != "" && d.Node != target {
			t.Fatalf("placed on %s, want %s or nowhere", d.Node, target)
		}
		// Alone, the target node decides: the pod fits there iff it was placed.
		var alone []*placement.Node
		for _, nd := range nodes {
			if nd.Name == target {
				alone = append(alone, nd)
			}
		}
		if len(alone) == 0 {
			if d.Node != "" {
				t.Fatalf("placed on %s, a node that its affinity does not name", d.Node)
			}
			return
		}
		if fits := placement.Place(alone, nil, placement.NewPod(p)).Node == target; fits != (d.Node == target) {
			t.Fatalf("fits %s alone: %v, placed among all: %q", target, fits, d.Node)
		}
	})
}
