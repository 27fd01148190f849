// Package kindstest makes realistic objects and their events for tests and benchmarks: a pod
// as a real cluster holds it, about 2 KB in Kubernetes protobuf, and the event that records it.
package kindstest

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/kinds/builtin"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// PodKind is the catalog's Pod.
var PodKind = func() *kinds.Kind {
	k, ok := builtin.Catalog().ByKind(schema.GroupVersionKind{Version: "v1", Kind: "Pod"})
	if !ok {
		panic("no Pod in the catalog")
	}
	return k
}()

// RealisticPod is a running pod of a Deployment as a real cluster holds it: owner reference,
// labels and annotations, two containers with ports, env, resources, probes and mounts, the
// service-account volume, tolerations, status with conditions and container statuses. It is
// about 2 KB in Kubernetes protobuf. i picks its name, node (one of 100) and app (one of 10).
func RealisticPod(i int, rng *rand.Rand) *corev1.Pod {
	app := fmt.Sprintf("app-%d", i%10)
	// Pods of one ReplicaSet share its template hash.
	hash := fmt.Sprintf("%08x", uint32(i%10)*2654435761)
	start := metav1.NewTime(time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second))
	probe := &corev1.Probe{
		ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080), Scheme: corev1.URISchemeHTTP}},
		PeriodSeconds:    10,
		TimeoutSeconds:   1,
		SuccessThreshold: 1,
		FailureThreshold: 3,
	}
	container := func(name, image string, port int32) corev1.Container {
		return corev1.Container{
			Name:  name,
			Image: image,
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: port, Protocol: corev1.ProtocolTCP}},
			Env: []corev1.EnvVar{
				{Name: "LOG_LEVEL", Value: "info"},
				{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}}},
				{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "status.podIP"}}},
			},
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
			},
			VolumeMounts:             []corev1.VolumeMount{{Name: "kube-api-access", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}},
			LivenessProbe:            probe,
			ReadinessProbe:           probe,
			TerminationMessagePath:   "/dev/termination-log",
			TerminationMessagePolicy: corev1.TerminationMessageReadFile,
			ImagePullPolicy:          corev1.PullIfNotPresent,
		}
	}
	status := func(name, image string) corev1.ContainerStatus {
		return corev1.ContainerStatus{
			Name: name, Image: image, ImageID: "docker.io/library/" + image + "@sha256:" + fmt.Sprintf("%064x", rng.Uint64()),
			ContainerID: "containerd://" + fmt.Sprintf("%064x", rng.Uint64()), Ready: true, Started: new(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: start}},
		}
	}
	seconds := int64(3600)
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:              fmt.Sprintf("%s-%s-%05d", app, hash[:6], i),
			Namespace:         fmt.Sprintf("team-%d", i%20),
			UID:               types.UID(fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", rng.Uint32(), rng.Uint32()&0xffff, rng.Uint32()&0xffff, rng.Uint32()&0xffff, rng.Uint64()&0xffffffffffff)),
			CreationTimestamp: start,
			GenerateName:      app + "-" + hash[:6] + "-",
			Labels:            map[string]string{"app": app, "pod-template-hash": hash, "tier": []string{"frontend", "backend", "cache"}[i%3], "release": "stable"},
			Annotations:       map[string]string{"kubectl.kubernetes.io/restartedAt": "2026-11-01T09:00:00Z", "prometheus.io/scrape": "true"},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "apps/v1", Kind: "ReplicaSet", Name: app + "-" + hash[:6], UID: types.UID(fmt.Sprintf("%032x", rng.Uint64())),
				Controller: new(true), BlockOwnerDeletion: new(true),
			}},
		},
		Spec: corev1.PodSpec{
			Containers:                    []corev1.Container{container("server", "registry.example.com/"+app+":v1.4.2", 8080), container("sidecar", "registry.example.com/proxy:v2.1.0", 15001)},
			RestartPolicy:                 corev1.RestartPolicyAlways,
			TerminationGracePeriodSeconds: new(int64(30)),
			DNSPolicy:                     corev1.DNSClusterFirst,
			ServiceAccountName:            "default",
			NodeName:                      fmt.Sprintf("node-%03d", i%100),
			SchedulerName:                 "default-scheduler",
			Priority:                      new(int32(0)),
			EnableServiceLinks:            new(true),
			PreemptionPolicy:              new(corev1.PreemptLowerPriority),
			Tolerations: []corev1.Toleration{
				{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &seconds},
				{Key: "node.kubernetes.io/unreachable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &seconds},
			},
			Volumes: []corev1.Volume{{Name: "kube-api-access", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{
					{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{ExpirationSeconds: &seconds, Path: "token"}},
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}, Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
				},
			}}}},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning,
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: start},
				{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: start},
				{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: start},
				{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: start},
			},
			HostIP:            fmt.Sprintf("10.0.%d.%d", i%100/250, i%100+1),
			PodIP:             fmt.Sprintf("10.244.%d.%d", i/250%250, i%250+1),
			PodIPs:            []corev1.PodIP{{IP: fmt.Sprintf("10.244.%d.%d", i/250%250, i%250+1)}},
			StartTime:         &start,
			QOSClass:          corev1.PodQOSBurstable,
			ContainerStatuses: []corev1.ContainerStatus{status("server", "registry.example.com/"+app+":v1.4.2"), status("sidecar", "registry.example.com/proxy:v2.1.0")},
		},
	}
}

// PodEvent is the event that adds or changes pod, encoded as enc.
func PodEvent(tb testing.TB, typ eventv1.ChangeType, pod *corev1.Pod, enc eventv1.Encoding) *eventv1.ObjectChanged {
	tb.Helper()
	data, err := kinds.Encode(pod, enc)
	if err != nil {
		tb.Fatal(err)
	}
	return &eventv1.ObjectChanged{
		Type: typ, Reason: "spec", Encoding: enc, Object: data,
		Actor:  &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_RECONCILER, Name: "replicaset"},
		Ref:    &eventv1.ObjectRef{Version: "v1", Kind: "Pod", Resource: "pods", Namespace: pod.Namespace, Name: pod.Name, Uid: string(pod.UID)},
		Labels: pod.Labels, Fields: PodKind.Fields(pod),
	}
}
