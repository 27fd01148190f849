package endpoints_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/logplane/logplane/reconcilers/endpoints"
	"github.com/logplane/logplane/reconcilers/reconcilerstest"
)

// pod writes a pod bound to node "ghost" (a Node with no agent, so the statuses the test writes
// stay), with the container port http at httpPort, and then its status.
func pod(t *testing.T, c *reconcilerstest.Cluster, name, app, ip string, httpPort int32, ready, terminating bool) {
	t.Helper()
	ctx := t.Context()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{NodeName: "ghost", Containers: []corev1.Container{{Name: "c", Image: "busybox",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: httpPort}}}}},
	}
	if terminating {
		p.Finalizers = []string{"example.com/hold"}
	}
	p, err := c.Client.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	readyStatus := corev1.ConditionFalse
	if ready {
		readyStatus = corev1.ConditionTrue
	}
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: readyStatus, LastTransitionTime: metav1.Now()}}}
	if _, err := c.Client.CoreV1().Pods("default").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if terminating {
		if err := c.Client.CoreV1().Pods("default").Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

func b(p *bool) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprint(*p)
}

func start(t *testing.T) *reconcilerstest.Cluster {
	t.Helper()
	c := reconcilerstest.Start(t, reconcilerstest.Options{NoScheduler: true})
	if _, err := c.Client.CoreV1().Nodes().Create(t.Context(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "ghost"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return c
}

// slicesOf returns the EndpointSlices of svc, as "addressType ports: addr(ready,serving,terminating) ..."
// lines, sorted.
func slicesOf(t *testing.T, c *reconcilerstest.Cluster, svc string) ([]discoveryv1.EndpointSlice, []string) {
	t.Helper()
	l, err := c.Client.DiscoveryV1().EndpointSlices("default").List(context.Background(), metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, s := range l.Items {
		var ports []string
		for _, p := range s.Ports {
			ports = append(ports, fmt.Sprintf("%s=%d", *p.Name, *p.Port))
		}
		sort.Strings(ports)
		var eps []string
		for _, e := range s.Endpoints {
			eps = append(eps, fmt.Sprintf("%s(%s,%s,%s)", e.Addresses[0], b(e.Conditions.Ready), b(e.Conditions.Serving), b(e.Conditions.Terminating)))
		}
		sort.Strings(eps)
		lines = append(lines, fmt.Sprintf("%s %s: %s", s.AddressType, strings.Join(ports, ","), strings.Join(eps, " ")))
	}
	sort.Strings(lines)
	return l.Items, lines
}

// A Service with a selector gets Endpoints and EndpointSlices as Kubernetes writes them: named
// target ports resolved per pod (two port mappings, two subsets, two slices), not-ready pods in
// notReadyAddresses and as ready=false, a terminating pod only in the slices (serving,
// terminating), publishNotReadyAddresses, and kubectl prints them as Kubernetes does.
func TestServiceWithSelector(t *testing.T) {
	c := start(t)
	pod(t, c, "web-1", "web", "10.244.0.11", 8080, true, false)
	pod(t, c, "web-2", "web", "10.244.0.12", 8080, false, false)
	pod(t, c, "web-3", "web", "10.244.0.13", 8081, true, false)
	pod(t, c, "web-4", "web", "10.244.0.14", 8080, true, true)
	pod(t, c, "other", "other", "10.244.0.15", 8080, true, false)
	c.MustApply(`apiVersion: v1
kind: Service
metadata: {name: web, namespace: default, labels: {tier: front}}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: metrics, port: 9100}
`)
	want := []string{
		"IPv4 http=8080,metrics=9100: 10.244.0.11(true,true,false) 10.244.0.12(false,false,false) 10.244.0.14(false,true,true)",
		"IPv4 http=8081,metrics=9100: 10.244.0.13(true,true,false)",
	}
	c.Eventually(10*time.Second, func() (bool, string) {
		_, got := slicesOf(t, c, "web")
		return fmt.Sprint(got) == fmt.Sprint(want), fmt.Sprintf("slices %q, want %q", got, want)
	})
	slices, _ := slicesOf(t, c, "web")
	for _, s := range slices {
		if s.Labels[discoveryv1.LabelManagedBy] != endpoints.SliceManagedBy || s.Labels["tier"] != "front" ||
			len(s.OwnerReferences) != 1 || s.OwnerReferences[0].Kind != "Service" || !strings.HasPrefix(s.Name, "web-") {
			t.Errorf("slice %s: labels %v, owners %v", s.Name, s.Labels, s.OwnerReferences)
		}
	}
	var ep *corev1.Endpoints
	c.Eventually(10*time.Second, func() (bool, string) {
		var err error
		ep, err = c.Client.CoreV1().Endpoints("default").Get(t.Context(), "web", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return len(ep.Subsets) == 3, fmt.Sprintf("subsets %v", ep.Subsets)
	})
	got := map[string]string{}
	for _, s := range ep.Subsets {
		var ports []string
		for _, p := range s.Ports {
			ports = append(ports, fmt.Sprintf("%s=%d", p.Name, p.Port))
		}
		sort.Strings(ports)
		var ready, notReady []string
		for _, a := range s.Addresses {
			ready = append(ready, a.IP+"/"+a.TargetRef.Name)
		}
		for _, a := range s.NotReadyAddresses {
			notReady = append(notReady, a.IP+"/"+a.TargetRef.Name)
		}
		got[strings.Join(ports, ",")] = fmt.Sprintf("ready %v notReady %v", ready, notReady)
	}
	// Repacked as Kubernetes does: one subset per distinct set of addresses.
	wantEp := map[string]string{
		"http=8080":    "ready [10.244.0.11/web-1] notReady [10.244.0.12/web-2]",
		"http=8081":    "ready [10.244.0.13/web-3] notReady []",
		"metrics=9100": "ready [10.244.0.11/web-1 10.244.0.13/web-3] notReady [10.244.0.12/web-2]",
	}
	if fmt.Sprint(got) != fmt.Sprint(wantEp) {
		t.Errorf("endpoints subsets %v, want %v", got, wantEp)
	}
	if ep.Labels[endpoints.LabelEndpointsManagedBy] != endpoints.EndpointsManagedBy || ep.Labels["tier"] != "front" {
		t.Errorf("endpoints labels %v", ep.Labels)
	}

	out := c.MustKubectl("get", "ep", "web")
	if !strings.Contains(out, "NAME") || !strings.Contains(out, "ENDPOINTS") ||
		!endpointsLine(out, "web", "+ 1 more...") {
		t.Errorf("kubectl get ep:\n%s", out)
	}
	out = c.MustKubectl("get", "endpointslices")
	if !strings.Contains(out, "ADDRESSTYPE") || !strings.Contains(out, "IPv4") || !strings.Contains(out, "10.244.0.13") {
		t.Errorf("kubectl get endpointslices:\n%s", out)
	}
	out = c.MustKubectl("describe", "svc", "web")
	if !strings.Contains(out, "Endpoints:") || !strings.Contains(out, "10.244.0.11:8080") {
		t.Errorf("kubectl describe svc:\n%s", out)
	}

	// publishNotReadyAddresses: every pod with an address is published as ready (serving still
	// says whether the pod is ready).
	c.MustKubectl("patch", "svc", "web", "-p", `{"spec":{"publishNotReadyAddresses":true}}`)
	want = []string{
		"IPv4 http=8080,metrics=9100: 10.244.0.11(true,true,false) 10.244.0.12(true,false,false) 10.244.0.14(true,true,true)",
		"IPv4 http=8081,metrics=9100: 10.244.0.13(true,true,false)",
	}
	c.Eventually(10*time.Second, func() (bool, string) {
		_, got := slicesOf(t, c, "web")
		return fmt.Sprint(got) == fmt.Sprint(want), fmt.Sprintf("slices %q, want %q", got, want)
	})
	c.Eventually(10*time.Second, func() (bool, string) {
		ep, err := c.Client.CoreV1().Endpoints("default").Get(t.Context(), "web", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		ips := map[string]bool{}
		for _, s := range ep.Subsets {
			for _, a := range s.Addresses {
				ips[a.IP] = true
			}
			if len(s.NotReadyAddresses) > 0 {
				return false, "not-ready addresses left"
			}
		}
		return len(ips) == 4, fmt.Sprintf("%d ready addresses (with publishNotReadyAddresses a terminating pod is in Endpoints too)", len(ips))
	})

	// The Service goes: its Endpoints and (by ownership) its slices go.
	c.MustKubectl("delete", "svc", "web")
	c.Eventually(10*time.Second, func() (bool, string) {
		_, err := c.Client.CoreV1().Endpoints("default").Get(t.Context(), "web", metav1.GetOptions{})
		s, _ := slicesOf(t, c, "web")
		return err != nil && len(s) == 0, fmt.Sprintf("endpoints: %v, %d slices", err, len(s))
	})
}

func endpointsLine(out, name, endpoints string) bool {
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == name && strings.HasSuffix(strings.Join(f[1:len(f)-1], " "), endpoints) && strings.Count(f[1], ",") == 2 {
			return true
		}
	}
	return false
}

// 250 pods: slices of at most 100 endpoints, 250 in all; Endpoints holds them all.
func TestAtMost100EndpointsPerSlice(t *testing.T) {
	c := start(t)
	for i := range 250 {
		pod(t, c, fmt.Sprintf("many-%d", i), "many", fmt.Sprintf("10.244.%d.%d", 1+i/200, 1+i%200), 8080, true, false)
	}
	c.MustKubectl("create", "service", "clusterip", "many", "--tcp=80:8080")
	c.Eventually(30*time.Second, func() (bool, string) {
		slices, _ := slicesOf(t, c, "many")
		n, biggest := 0, 0
		for _, s := range slices {
			n += len(s.Endpoints)
			biggest = max(biggest, len(s.Endpoints))
		}
		return n == 250 && biggest <= 100 && len(slices) == 3, fmt.Sprintf("%d slices, %d endpoints, the biggest %d", len(slices), n, biggest)
	})
}

// A Service without a selector keeps the Endpoints its user writes; they are mirrored into an
// EndpointSlice managed by the mirroring reconciler, and follow changes.
func TestSelectorlessServiceMirrored(t *testing.T) {
	c := start(t)
	c.MustApply(`apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec:
  ports: [{name: pg, port: 5432}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: db, namespace: default, labels: {team: data}}
subsets:
- addresses: [{ip: 192.0.2.10}, {ip: 192.0.2.11}]
  notReadyAddresses: [{ip: 192.0.2.12}]
  ports: [{name: pg, port: 5432}]
`)
	want := []string{"IPv4 pg=5432: 192.0.2.10(true,-,-) 192.0.2.11(true,-,-) 192.0.2.12(false,-,-)"}
	var slices []discoveryv1.EndpointSlice
	c.Eventually(10*time.Second, func() (bool, string) {
		var got []string
		slices, got = slicesOf(t, c, "db")
		return fmt.Sprint(got) == fmt.Sprint(want), fmt.Sprintf("slices %q, want %q", got, want)
	})
	s := slices[0]
	if s.Labels[discoveryv1.LabelManagedBy] != endpoints.MirroringManagedBy || s.Labels["team"] != "data" ||
		len(s.OwnerReferences) != 1 || s.OwnerReferences[0].Kind != "Endpoints" {
		t.Errorf("mirrored slice: labels %v, owners %v", s.Labels, s.OwnerReferences)
	}
	c.MustKubectl("patch", "ep", "db", "--type=json", "-p", `[{"op":"remove","path":"/subsets/0/addresses/0"}]`)
	want = []string{"IPv4 pg=5432: 192.0.2.11(true,-,-) 192.0.2.12(false,-,-)"}
	c.Eventually(10*time.Second, func() (bool, string) {
		_, got := slicesOf(t, c, "db")
		return fmt.Sprint(got) == fmt.Sprint(want), fmt.Sprintf("slices %q, want %q", got, want)
	})
	c.WaitReconciled()
	ep, err := c.Client.CoreV1().Endpoints("default").Get(t.Context(), "db", metav1.GetOptions{})
	if err != nil || len(ep.Subsets) != 1 || len(ep.Subsets[0].Addresses) != 1 || ep.Labels[endpoints.LabelEndpointsManagedBy] != "" {
		t.Errorf("the user's Endpoints were changed: %v %v", ep, err)
	}
	// Given a selector, the Service's slices are the endpointslice reconciler's; the mirrored
	// one goes.
	c.MustKubectl("patch", "svc", "db", "-p", `{"spec":{"selector":{"app":"db"}}}`)
	c.Eventually(10*time.Second, func() (bool, string) {
		slices, got := slicesOf(t, c, "db")
		for _, s := range slices {
			if s.Labels[discoveryv1.LabelManagedBy] == endpoints.MirroringManagedBy {
				return false, fmt.Sprint(got)
			}
		}
		return true, ""
	})
}

var _ = intstr.FromInt32
