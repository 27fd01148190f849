package defaults_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

// stored is a NodePort service as the API server stores it after allocating its IP and port.
func stored(t *testing.T) *corev1.Service {
	t.Helper()
	s := decode(t, serviceGVK, `
metadata: {name: web-service}
spec:
  type: NodePort
  clusterIP: 10.104.107.132
  selector: {app: web}
  ports: [{name: http, port: 80, nodePort: 32610}, {name: metrics, port: 9090, nodePort: 31000}]
`).(*corev1.Service)
	apply(s)
	return s
}

func TestUpdateCarriesAllocatedValues(t *testing.T) {
	old := stored(t)
	// kubectl replace with the manifest the user wrote: no cluster IP, no node ports.
	s := decode(t, serviceGVK, `
metadata: {name: web-service}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 80}, {name: metrics, port: 9091}]
`).(*corev1.Service)
	update(s, old)
	if s.Spec.ClusterIP != "10.104.107.132" || !cmp.Equal(s.Spec.ClusterIPs, []string{"10.104.107.132"}) {
		t.Errorf("cluster IPs %q %q, want the allocated 10.104.107.132", s.Spec.ClusterIP, s.Spec.ClusterIPs)
	}
	if s.Spec.Ports[0].NodePort != 32610 || s.Spec.Ports[1].NodePort != 31000 {
		t.Errorf("node ports %d %d, want 32610 31000 carried over by port name", s.Spec.Ports[0].NodePort, s.Spec.Ports[1].NodePort)
	}
	if !cmp.Equal(s.Spec.IPFamilies, []corev1.IPFamily{corev1.IPv4Protocol}) || *s.Spec.IPFamilyPolicy != corev1.IPFamilyPolicySingleStack {
		t.Errorf("families %v policy %v", s.Spec.IPFamilies, *s.Spec.IPFamilyPolicy)
	}
}

func TestUpdateToClusterIPDropsNodePorts(t *testing.T) {
	old := stored(t)
	s := old.DeepCopy()
	s.Spec.Type = corev1.ServiceTypeClusterIP
	update(s, old)
	for _, p := range s.Spec.Ports {
		if p.NodePort != 0 {
			t.Errorf("port %s keeps node port %d as a ClusterIP service", p.Name, p.NodePort)
		}
	}
	if s.Spec.ExternalTrafficPolicy != "" {
		t.Errorf("externalTrafficPolicy %q kept for a ClusterIP service", s.Spec.ExternalTrafficPolicy)
	}
	if s.Spec.ClusterIP != "10.104.107.132" {
		t.Errorf("cluster IP %q, want it kept", s.Spec.ClusterIP)
	}
}

func TestUpdateToExternalNameDropsClusterIP(t *testing.T) {
	old := stored(t)
	s := old.DeepCopy()
	s.Spec.Type = corev1.ServiceTypeExternalName
	s.Spec.ExternalName = "web.example.com"
	update(s, old)
	if s.Spec.ClusterIP != "" || s.Spec.ClusterIPs != nil || s.Spec.IPFamilies != nil || s.Spec.IPFamilyPolicy != nil || s.Spec.InternalTrafficPolicy != nil {
		t.Errorf("ExternalName service keeps %q %v %v %v %v", s.Spec.ClusterIP, s.Spec.ClusterIPs, s.Spec.IPFamilies, s.Spec.IPFamilyPolicy, s.Spec.InternalTrafficPolicy)
	}
}

func TestUpdateOfOtherKindsIsApply(t *testing.T) {
	old := decode(t, deploymentGVK, `{metadata: {name: d}, spec: {replicas: 5}}`)
	obj := decode(t, deploymentGVK, `{metadata: {name: d}}`)
	want := obj.DeepCopyObject()
	apply(want)
	update(obj, old)
	if diff := cmp.Diff(asMap(t, want), asMap(t, obj)); diff != "" {
		t.Errorf("Update differs from Apply (-apply +update):\n%s", diff)
	}
}
