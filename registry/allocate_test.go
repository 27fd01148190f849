package registry_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/eventlog/eventlogtest"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/registry"
)

// apiServer is a registry with its own connection to the log and its own projection, as each
// of several API servers has.
type apiServer struct {
	log   *eventlog.Log
	store *projections.Store
	reg   *registry.Registry
}

// newAPIServers opens n registries over one log: the first embeds the server, the others
// connect to it as clients.
func newAPIServers(t *testing.T, e *env, n int) []*apiServer {
	t.Helper()
	out := []*apiServer{{log: e.log, store: e.store, reg: e.reg}}
	for range n - 1 {
		l, err := eventlog.Open(t.Context(), eventlog.Config{URL: e.log.ClientURL(), Creds: eventlogtest.Credentials(t, e.log, eventlog.Identity{Role: eventlog.RoleAPIServer}), Durability: eventlog.Lazy})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		out = append(out, newAPIServer(t, e, l))
	}
	return out
}

func newAPIServer(t *testing.T, e *env, l *eventlog.Log) *apiServer {
	t.Helper()
	s := &apiServer{log: l, store: projections.New(e.cat, nil)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.store.Run(ctx, l) // ends with the test
	}()
	t.Cleanup(func() { cancel(); <-done })
	reg, err := registry.New(registry.Config{Log: l, Store: s.store, Catalog: e.cat, Now: func() time.Time { return e.now }})
	if err != nil {
		t.Fatal(err)
	}
	s.reg = reg
	if err := s.store.WaitFor(t.Context(), e.store.Applied()); err != nil {
		t.Fatal(err)
	}
	return s
}

func newListeningEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, eventlogtest.Open(t, eventlogtest.Listening))
}

func service(name, ip string, typ corev1.ServiceType, nodePort int32) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.ServiceSpec{Type: typ, ClusterIP: ip,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, NodePort: nodePort}}},
	}
}

func (e *env) kindOf(group, resource string) *kinds.Kind {
	k, ok := e.cat.ByGroupResource(schema.GroupResource{Group: group, Resource: resource})
	if !ok {
		panic(resource)
	}
	return k
}

// ipAddress returns the IPAddress of ip in s's projection, nil if there is none.
func (s *apiServer) ipAddress(t *testing.T, ip string) *networkingv1.IPAddress {
	t.Helper()
	o, ok := s.store.Get(eventlog.Key{Group: "networking.k8s.io", Resource: "ipaddresses", Name: ip})
	if !ok {
		return nil
	}
	obj, err := o.Decode()
	if err != nil {
		t.Fatal(err)
	}
	return obj.(*networkingv1.IPAddress)
}

// nodePortHolder returns "namespace/name" of the Service holding node port p, "" if none.
func (s *apiServer) nodePortHolder(p int32) string {
	o, ok := s.store.Get(registry.NodePortKey(p))
	if !ok {
		return ""
	}
	ns, name := registry.NodePortParent(o)
	return ns + "/" + name
}

// TestAPIServersNeverShareAnAddress: two API servers (each its own log connection and
// projection) asked at the same moment for the same cluster IP, or the same node port, for
// different Services: exactly one gets it, the other is refused with 422 "already allocated";
// and each allocated value is one IPAddress (or node port object) naming its Service.
func TestAPIServersNeverShareAnAddress(t *testing.T) {
	e := newListeningEnv(t)
	servers := newAPIServers(t, e, 2)
	svcKind := e.kind("services")
	for round := range 10 {
		ip := fmt.Sprintf("10.96.100.%d", round+1)
		port := int32(30100 + round)
		var wg sync.WaitGroup
		errs := make([]error, 4)
		start := make(chan struct{})
		for i, s := range servers {
			wg.Add(2)
			go func() {
				defer wg.Done()
				<-start
				_, errs[i] = s.reg.Create(t.Context(), svcKind, service(fmt.Sprintf("ip-%d-%d", round, i), ip, corev1.ServiceTypeClusterIP, 0), alice)
			}()
			go func() {
				defer wg.Done()
				<-start
				_, errs[2+i] = s.reg.Create(t.Context(), svcKind, service(fmt.Sprintf("np-%d-%d", round, i), "", corev1.ServiceTypeNodePort, port), alice)
			}()
		}
		close(start)
		wg.Wait()
		for _, pair := range [][2]int{{0, 1}, {2, 3}} {
			a, b := errs[pair[0]], errs[pair[1]]
			if (a == nil) == (b == nil) {
				t.Fatalf("round %d: both or neither got the value: %v, %v", round, a, b)
			}
			lost := a
			if lost == nil {
				lost = b
			}
			if !apierrors.IsInvalid(lost) || !strings.Contains(lost.Error(), "already allocated") {
				t.Fatalf("round %d: the loser got %v, want 422 already allocated", round, lost)
			}
		}
		winner := 0
		if errs[0] != nil {
			winner = 1
		}
		if err := servers[0].store.WaitFor(t.Context(), servers[1].store.Applied()); err != nil {
			t.Fatal(err)
		}
		got := servers[0].ipAddress(t, ip)
		if got == nil || got.Spec.ParentRef == nil || got.Spec.ParentRef.Name != fmt.Sprintf("ip-%d-%d", round, winner) ||
			got.Labels[networkingv1.LabelManagedBy] != "ipallocator.k8s.io" {
			t.Fatalf("round %d: IPAddress %s is %+v, want one naming ip-%d-%d", round, ip, got, round, winner)
		}
		winner = 0
		if errs[2] != nil {
			winner = 1
		}
		if h, want := servers[0].nodePortHolder(port), fmt.Sprintf("default/np-%d-%d", round, winner); h != want {
			t.Fatalf("round %d: node port %d held by %q, want %q", round, port, h, want)
		}
	}
}

// TestAllocationFromServiceCIDRs: with a ServiceCIDR of 14 usable addresses, Services created
// at once through two API servers get 14 different cluster IPs from it, each with its
// IPAddress, and the 15th finds none left; a deleted Service's address is free again.
func TestAllocationFromServiceCIDRs(t *testing.T) {
	e := newListeningEnv(t)
	servers := newAPIServers(t, e, 2)
	cidrKind := e.kindOf("networking.k8s.io", "servicecidrs")
	if _, err := e.reg.Create(t.Context(), cidrKind, &networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: "small"},
		Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"10.100.0.0/28"}}}, alice); err != nil {
		t.Fatal(err)
	}
	if err := servers[1].store.WaitFor(t.Context(), e.store.Applied()); err != nil {
		t.Fatal(err)
	}
	svcKind := e.kind("services")
	var wg sync.WaitGroup
	var mu sync.Mutex
	ips := map[string]string{}
	for i := range 14 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := servers[i%2].reg.Create(t.Context(), svcKind, service(fmt.Sprintf("s%d", i), "", corev1.ServiceTypeClusterIP, 0), alice)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			ip := out.(*corev1.Service).Spec.ClusterIP
			if other, dup := ips[ip]; dup {
				t.Errorf("%s given to s%d and %s", ip, i, other)
			}
			ips[ip] = fmt.Sprintf("s%d", i)
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for ip, name := range ips {
		if !strings.HasPrefix(ip, "10.100.0.") || ip == "10.100.0.0" || ip == "10.100.0.15" {
			t.Errorf("%s got %s, outside 10.100.0.1-14", name, ip)
		}
		if err := e.store.WaitFor(t.Context(), servers[1].store.Applied()); err != nil {
			t.Fatal(err)
		}
		if a := servers[0].ipAddress(t, ip); a == nil || a.Spec.ParentRef.Name != name {
			t.Errorf("IPAddress %s is %+v, want one naming %s", ip, a, name)
		}
	}
	if _, err := e.reg.Create(t.Context(), svcKind, service("full", "", corev1.ServiceTypeClusterIP, 0), alice); err == nil || !strings.Contains(err.Error(), "no cluster IP left") {
		t.Fatalf("15th Service: %v, want no cluster IP left", err)
	}
	if _, _, err := e.reg.Delete(t.Context(), svcKind, "default", "s3", metav1.DeleteOptions{}, alice); err != nil {
		t.Fatal(err)
	}
	out, err := servers[1].reg.Create(t.Context(), svcKind, service("again", "", corev1.ServiceTypeClusterIP, 0), alice)
	if err != nil {
		for i, srv := range servers {
			objs, _ := srv.store.List(projections.Query{Resource: schema.GroupResource{Group: "networking.k8s.io", Resource: "ipaddresses"}})
			for _, o := range objs {
				t.Logf("server %d: %s %d", i, o.Key.Name, o.Seq)
			}
		}
		t.Fatalf("after a delete: %v (ips %v)", err, ips)
	}
	for ip, name := range ips {
		if name == "s3" && out.(*corev1.Service).Spec.ClusterIP != ip {
			t.Errorf("the freed address was %s, the new Service got %s", ip, out.(*corev1.Service).Spec.ClusterIP)
		}
	}
}

// TestAllocationsKeptAcrossRestart: what was allocated is in the log, so an API server started
// afterwards (new connection, projection rebuilt from the log, no memory of the first) refuses
// the same node port and cluster IP; the Service's update to ClusterIP gives its node port
// back, its deletion its cluster IP; a failed create leaves nothing taken.
func TestAllocationsKeptAcrossRestart(t *testing.T) {
	e := newListeningEnv(t)
	svcKind := e.kind("services")
	if _, err := e.reg.Create(t.Context(), svcKind, service("web", "10.96.7.7", corev1.ServiceTypeNodePort, 30080), alice); err != nil {
		t.Fatal(err)
	}
	l, err := eventlog.Open(t.Context(), eventlog.Config{URL: e.log.ClientURL(), Creds: eventlogtest.Credentials(t, e.log, eventlog.Identity{Role: eventlog.RoleAPIServer}), Durability: eventlog.Lazy})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	later := newAPIServer(t, e, l)
	_, err = later.reg.Create(t.Context(), svcKind, service("other", "", corev1.ServiceTypeNodePort, 30080), alice)
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "provided port is already allocated") {
		t.Fatalf("same node port after a restart: %v", err)
	}
	_, err = later.reg.Create(t.Context(), svcKind, service("other", "10.96.7.7", corev1.ServiceTypeClusterIP, 0), alice)
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "the provided IP is already allocated") {
		t.Fatalf("same cluster IP after a restart: %v", err)
	}
	// A create that fails after allocating (the name is taken) gives back what it took.
	_, err = later.reg.Create(t.Context(), svcKind, service("web", "10.96.8.8", corev1.ServiceTypeNodePort, 30081), alice)
	if !apierrors.IsAlreadyExists(err) {
		t.Fatalf("duplicate name: %v", err)
	}
	if a := later.ipAddress(t, "10.96.8.8"); a != nil {
		t.Errorf("a failed create left IPAddress %+v", a)
	}
	if h := later.nodePortHolder(30081); h != "" {
		t.Errorf("a failed create left node port 30081 held by %s", h)
	}

	// NodePort → ClusterIP: the node port is free.
	if _, err := later.reg.Modify(t.Context(), svcKind, "default", "web", alice, registry.UpdateOptions{}, func(cur runtime.Object) (runtime.Object, error) {
		svc := cur.(*corev1.Service)
		svc.Spec.Type = corev1.ServiceTypeClusterIP
		svc.Spec.Ports[0].NodePort = 0
		return svc, nil
	}); err != nil {
		t.Fatal(err)
	}
	if h := later.nodePortHolder(30080); h != "" {
		t.Fatalf("node port 30080 still held by %s after the Service became ClusterIP", h)
	}
	if _, err := later.reg.Create(t.Context(), svcKind, service("other", "", corev1.ServiceTypeNodePort, 30080), alice); err != nil {
		t.Fatalf("node port 30080 once given back: %v", err)
	}
	if _, _, err := e.reg.Delete(t.Context(), svcKind, "default", "web", metav1.DeleteOptions{}, alice); err != nil {
		t.Fatal(err)
	}
	if err := later.store.WaitFor(t.Context(), e.store.Applied()); err != nil {
		t.Fatal(err)
	}
	if a := later.ipAddress(t, "10.96.7.7"); a != nil {
		t.Fatalf("IPAddress %+v left after its Service was deleted", a)
	}
	if _, err := later.reg.Create(t.Context(), svcKind, service("third", "10.96.7.7", corev1.ServiceTypeClusterIP, 0), alice); err != nil {
		t.Fatalf("cluster IP once given back: %v", err)
	}
}
