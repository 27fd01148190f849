package validation_test

import (
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

const benchPod = `
metadata: {name: emailservice-pod-test, namespace: default, labels: {project: online-boutique, env: prod, release: v0.7.0-stable}}
spec:
  containers:
  - name: server
    image: gcr.io/google-samples/microservices-demo/emailservice:v0.7.0
    ports: [{containerPort: 8080, name: grpc}]
    env: [{name: PORT, value: "8080"}, {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
    resources: {requests: {cpu: 100m, memory: 64Mi}, limits: {cpu: 200m, memory: 128Mi}}
    readinessProbe: {grpc: {port: 8080}, periodSeconds: 5}
    livenessProbe: {grpc: {port: 8080}, periodSeconds: 5}
    volumeMounts: [{name: templates, mountPath: /email_server/templates}]
  volumes: [{name: templates, configMap: {name: email-templates}}]
`

// BenchmarkPodCreateSemantics measures what a pod create costs in this package's part of the
// write path (defaults, then validation), against decoding the same pod from JSON, which every
// request pays anyway: the ratio says how much of the request the semantics take.
func BenchmarkPodCreateSemantics(b *testing.B) {
	k := kind(&testing.T{}, "", "Pod")
	j, err := yaml.YAMLToJSON([]byte(benchPod))
	if err != nil {
		b.Fatal(err)
	}
	var decodeNs, semNs float64
	b.Run("decode", func(b *testing.B) {
		for b.Loop() {
			var p corev1.Pod
			if err := json.Unmarshal(j, &p); err != nil {
				b.Fatal(err)
			}
		}
		decodeNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	b.Run("defaults+validation", func(b *testing.B) {
		var base corev1.Pod
		if err := json.Unmarshal(j, &base); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			p := base.DeepCopy()
			apply(p)
			if errs := k.Validate(p); len(errs) > 0 {
				b.Fatal(errs)
			}
		}
		semNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		b.ReportMetric(1e9/semNs, "pods/s")
		if decodeNs > 0 {
			b.ReportMetric(semNs/decodeNs, "x-decode")
		}
	})
}
