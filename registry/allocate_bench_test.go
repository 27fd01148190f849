package registry_test

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/logplane/logplane/eventlog/eventlogtest"
)

// BenchmarkServiceCreate: creating a Service and deleting it again through the registry, on a
// durable log (group commit), one writer: what allocating its cluster IP (and, for NodePort,
// its node port) and giving them back costs beside the Service's own writes.
func BenchmarkServiceCreate(b *testing.B) {
	for _, typ := range []corev1.ServiceType{corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort} {
		b.Run("type="+string(typ), func(b *testing.B) {
			e := newEnvWith(b, eventlogtest.Open(b, eventlogtest.Durable))
			svcKind := e.kind("services")
			i := 0
			for b.Loop() {
				name := fmt.Sprintf("svc-%d", i)
				i++
				svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
					Spec: corev1.ServiceSpec{Type: typ, Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}}}
				if _, err := e.reg.Create(b.Context(), svcKind, svc, alice); err != nil {
					b.Fatal(err)
				}
				if _, _, err := e.reg.Delete(b.Context(), svcKind, "default", name, metav1.DeleteOptions{}, alice); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
