package netpolicy_test

import (
	"bufio"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/logplane/logplane/dataplane/netpolicy"
)

const (
	ingress = networkingv1.PolicyTypeIngress
	egress  = networkingv1.PolicyTypeEgress
)

// fourPods: web and client in default, other in namespace other, plain in
// default with no labels.
func fourPods(t *testing.T) *testNet {
	n := newTestNet(t)
	n.addPod(t, "default", "web", map[string]string{"app": "web"})
	n.addPod(t, "default", "client", map[string]string{"role": "client"})
	n.addPod(t, "other", "other", map[string]string{"role": "client"})
	n.addPod(t, "default", "plain", nil)
	return n
}

func TestIngress(t *testing.T) {
	n := fourPods(t)
	e, _ := n.newEnforcer(t)
	e.UpdateNamespace(namespace("default", nil))
	e.UpdateNamespace(namespace("other", nil))
	mustSync(t, e)
	// No policy: everything open.
	n.check(t,
		flow{"client", "web", 8080, true, false},
		flow{"plain", "web", 9090, true, false},
		flow{"other", "client", 8081, true, false},
	)

	// web accepts role=client of its own namespace on 8080, nothing else;
	// pods no policy selects stay open.
	np := policy("default", "web", map[string]string{"app": "web"}, ingress)
	np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
		From:  []networkingv1.NetworkPolicyPeer{podPeer(map[string]string{"role": "client"})},
		Ports: []networkingv1.NetworkPolicyPort{tcpPort(8080)},
	}}
	if err := e.UpdatePolicy(np); err != nil {
		t.Fatal(err)
	}
	mustSync(t, e)
	n.check(t,
		flow{"client", "web", 8080, true, false},
		flow{"client", "web", 8080, false, true}, // UDP: the port is TCP's
		flow{"client", "web", 9090, false, false},
		flow{"other", "web", 8080, false, false}, // role=client, but of another namespace
		flow{"plain", "web", 8080, false, false},
		flow{"web", "client", 8080, true, false},
		flow{"plain", "client", 9090, true, false},
	)

	// namespaceSelector with podSelector, a named port and a port range.
	e.UpdateNamespace(namespace("other", map[string]string{"team": "blue"}))
	np = np.DeepCopy()
	np.Spec.Ingress[0].From = append(np.Spec.Ingress[0].From, nsPeer(map[string]string{"team": "blue"}, map[string]string{"role": "client"}))
	np.Spec.Ingress[0].Ports = []networkingv1.NetworkPolicyPort{namedPort("metrics"), portRange(8080, 8081), udpPort(8081)}
	if err := e.UpdatePolicy(np); err != nil {
		t.Fatal(err)
	}
	mustSync(t, e)
	n.check(t,
		flow{"other", "web", 8080, true, false},
		flow{"other", "web", 8081, true, false},
		flow{"other", "web", 9090, true, false}, // metrics, web's named port
		flow{"client", "web", 9090, true, false},
		flow{"client", "web", 8081, true, true},
		flow{"client", "web", 8080, false, true},
		flow{"plain", "web", 8081, false, true},
		flow{"plain", "web", 8081, false, false},
	)

	// A second policy selecting client: ipBlock with except; policies add
	// up (web keeps its own).
	np2 := policy("default", "client", map[string]string{"role": "client"})
	np2.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
		From: []networkingv1.NetworkPolicyPeer{blockPeer("10.244.7.0/24", n.pods["web"].ip+"/32")},
	}}
	if err := e.UpdatePolicy(np2); err != nil {
		t.Fatal(err)
	}
	mustSync(t, e)
	n.check(t,
		flow{"web", "client", 8080, false, false}, // excepted
		flow{"plain", "client", 9090, true, false},
		flow{"other", "client", 8081, true, false}, // in the block
		flow{"plain", "other", 8080, true, false},
		flow{"client", "web", 8080, true, false},
	)

	// An empty rule allows everything; deleting policies opens pods again.
	np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{})
	if err := e.UpdatePolicy(np); err != nil {
		t.Fatal(err)
	}
	e.DeletePolicy("default", "client")
	mustSync(t, e)
	n.check(t,
		flow{"plain", "web", 8081, true, false},
		flow{"web", "client", 8080, true, false},
	)
	e.DeletePolicy("default", "web")
	mustSync(t, e)
	n.check(t, flow{"plain", "web", 9090, true, false})
	if list := n.nftList(t); regexp.MustCompile(`p[0-9]+-|s-[0-9a-f]{16}`).MatchString(list) {
		t.Fatalf("chains or sets of deleted policies left:\n%s", list)
	}
}

func TestEgress(t *testing.T) {
	n := fourPods(t)
	e, _ := n.newEnforcer(t)
	np := policy("default", "client-out", map[string]string{"role": "client"}, egress)
	np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{
		{To: []networkingv1.NetworkPolicyPeer{podPeer(map[string]string{"app": "web"})}, Ports: []networkingv1.NetworkPolicyPort{tcpPort(8080)}},
		{To: []networkingv1.NetworkPolicyPeer{blockPeer("10.244.7.0/24", n.pods["other"].ip+"/32")}, Ports: []networkingv1.NetworkPolicyPort{portRange(9090, 9099)}},
	}
	if err := e.UpdatePolicy(np); err != nil {
		t.Fatal(err)
	}
	mustSync(t, e)
	n.check(t,
		flow{"client", "web", 8080, true, false},
		flow{"client", "web", 8081, false, false},
		flow{"client", "plain", 9090, true, false},  // in the block
		flow{"client", "other", 9090, false, false}, // excepted
		flow{"client", "plain", 8080, false, false},
		flow{"web", "client", 8080, true, false}, // client's replies pass: the connection is established
		flow{"other", "plain", 8081, true, false},
	)

	// A named port with no peer: to any pod where the port has that name.
	np = np.DeepCopy()
	np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{Ports: []networkingv1.NetworkPolicyPort{namedPort("http")}})
	if err := e.UpdatePolicy(np); err != nil {
		t.Fatal(err)
	}
	mustSync(t, e)
	n.check(t,
		flow{"client", "plain", 8080, true, false},
		flow{"client", "other", 8080, true, false},
		flow{"client", "other", 8081, false, false},
	)
}

// TestEstablished: an open connection keeps working when a policy that
// would refuse it arrives, and a pod whose egress is closed still answers
// the connections its ingress accepts.
func TestEstablished(t *testing.T) {
	n := fourPods(t)
	e, _ := n.newEnforcer(t)
	mustSync(t, e)
	conn, err := dial(n.pods["client"], n.pods["web"], 8080, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// web: no ingress at all, no egress at all.
	if err := e.UpdatePolicy(policy("default", "web-closed", map[string]string{"app": "web"}, ingress, egress)); err != nil {
		t.Fatal(err)
	}
	mustSync(t, e)
	n.check(t,
		flow{"client", "web", 8080, false, false},
		flow{"web", "client", 8080, false, false},
	)
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("still there\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(conn).ReadString('\n'); err != nil || line != "still there\n" {
		t.Fatalf("established connection after the policy: %q, %v", line, err)
	}

	// Ingress from client allowed, egress still closed: the replies pass.
	np := policy("default", "web-closed", map[string]string{"app": "web"}, ingress, egress)
	np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{podPeer(map[string]string{"role": "client"})}}}
	if err := e.UpdatePolicy(np); err != nil {
		t.Fatal(err)
	}
	mustSync(t, e)
	n.check(t,
		flow{"client", "web", 9090, true, false},
		flow{"web", "client", 8080, false, false},
		flow{"plain", "web", 9090, false, false},
	)
}

// TestIncremental: pods and namespaces that change move set elements only,
// in one netlink batch; a policy change rewrites that policy alone; a
// second Enforcer takes over the table; Cleanup leaves nothing.
func TestIncremental(t *testing.T) {
	n := fourPods(t)
	var results []netpolicy.SyncResult
	cfg := netpolicy.Config{NetNS: n.node.Path(), OnSync: func(r netpolicy.SyncResult) { results = append(results, r) }}
	e, err := netpolicy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netpolicy.Cleanup(t.Context(), cfg) })
	for _, p := range n.pods {
		e.UpdatePod(p.object())
	}
	last := func() netpolicy.SyncResult {
		t.Helper()
		mustSync(t, e)
		return results[len(results)-1]
	}
	np := policy("default", "web", map[string]string{"app": "web"})
	np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{
		podPeer(map[string]string{"role": "client"}),
		nsPeer(map[string]string{"team": "blue"}, nil),
	}}}
	if err := e.UpdatePolicy(np); err != nil {
		t.Fatal(err)
	}
	np2 := policy("default", "plain", nil, egress) // every pod of default: no egress
	if err := e.UpdatePolicy(np2); err != nil {
		t.Fatal(err)
	}
	if r := last(); !r.Full {
		t.Fatalf("first sync %+v, want full", r)
	}
	e.DeletePolicy("default", "plain")
	if r := last(); r.Full || r.Netlink || r.Policies != 1 {
		t.Fatalf("policy deleted: %+v, want a partial nft sync of one policy", r)
	}
	n.check(t, flow{"plain", "web", 8080, false, false}, flow{"client", "web", 8080, true, false}, flow{"other", "web", 8080, false, false})

	// plain becomes a client: an element added, by netlink.
	n.pods["plain"].labels = map[string]string{"role": "client"}
	e.UpdatePod(n.pods["plain"].object())
	if r := last(); r.Full || !r.Netlink || r.Elements != 1 {
		t.Fatalf("pod relabelled: %+v, want one element by netlink", r)
	}
	// other's namespace joins team blue.
	e.UpdateNamespace(namespace("other", map[string]string{"team": "blue"}))
	if r := last(); !r.Netlink || r.Elements != 1 {
		t.Fatalf("namespace relabelled: %+v, want one element by netlink", r)
	}
	n.check(t, flow{"plain", "web", 8080, true, false}, flow{"other", "web", 8080, true, false})

	// web leaves the policy's selection: open again.
	n.pods["web"].labels = map[string]string{"app": "web2"}
	e.UpdatePod(n.pods["web"].object())
	e.UpdateNamespace(namespace("other", nil))
	if r := last(); !r.Netlink {
		t.Fatalf("pod relabelled: %+v, want netlink", r)
	}
	n.check(t, flow{"other", "web", 8080, true, false})

	// The policy follows web's new label: another selection set, so the
	// dispatch chains are rewritten and the old set goes.
	np3 := np.DeepCopy()
	np3.Spec.PodSelector.MatchLabels = map[string]string{"app": "web2"}
	if err := e.UpdatePolicy(np3); err != nil {
		t.Fatal(err)
	}
	if r := last(); r.Netlink || r.Policies != 1 {
		t.Fatalf("selector changed: %+v, want a partial nft sync of one policy", r)
	}
	n.check(t, flow{"other", "web", 8080, false, false}, flow{"plain", "web", 8080, true, false})
	if err := e.UpdatePolicy(np); err != nil {
		t.Fatal(err)
	}
	last()
	n.pods["web"].labels = map[string]string{"app": "web"}
	e.UpdatePod(n.pods["web"].object())
	e.DeletePod("default", "client")
	if r := last(); !r.Netlink {
		t.Fatalf("pods changed: %+v, want netlink", r)
	}
	n.check(t, flow{"client", "web", 8080, false, false}, flow{"other", "web", 8080, false, false}, flow{"plain", "web", 8080, true, false})
	before := n.nftList(t)

	// A new Enforcer with the same state takes the table over whole.
	e2, err := netpolicy.New(netpolicy.Config{NetNS: n.node.Path()})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range n.pods {
		if p.name != "client" {
			e2.UpdatePod(p.object())
		}
	}
	if err := e2.UpdatePolicy(np); err != nil {
		t.Fatal(err)
	}
	mustSync(t, e2)
	if after := n.nftList(t); normalize(after) != normalize(before) {
		t.Fatalf("table written anew differs:\n%s\nbefore:\n%s", after, before)
	}
	n.check(t, flow{"client", "web", 8080, false, false}, flow{"plain", "web", 8080, true, false})

	if err := netpolicy.Cleanup(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	if err := netpolicy.Cleanup(t.Context(), cfg); err != nil {
		t.Fatalf("second cleanup: %v", err)
	}
	if tables := nftTables(t, n.node); strings.Contains(tables, netpolicy.DefaultTable) {
		t.Fatalf("table left after Cleanup: %s", tables)
	}
}

// normalize sorts the elements of each set's listing (the kernel lists a
// hash set in its own order).
func normalize(list string) string {
	re := regexp.MustCompile(`(?s)elements = \{([^}]*)\}`)
	return re.ReplaceAllStringFunc(list, func(m string) string {
		inner := re.FindStringSubmatch(m)[1]
		var parts []string
		for _, p := range strings.Split(inner, ",") {
			parts = append(parts, strings.TrimSpace(p))
		}
		slices.Sort(parts)
		return "elements = {" + strings.Join(parts, ",") + "}"
	})
}
