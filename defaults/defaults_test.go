package defaults_test

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/logplane/logplane/kinds/builtin"
)

// decode reads a manifest as kubectl would send it.
func decode(t *testing.T, gvk schema.GroupVersionKind, manifest string) runtime.Object {
	t.Helper()
	k, ok := builtin.Catalog().ByKind(gvk)
	if !ok {
		t.Fatalf("no kind %v", gvk)
	}
	obj := k.New()
	j, err := yaml.YAMLToJSON([]byte(manifest))
	if err != nil {
		t.Fatalf("yaml: %v", err)
	}
	if err := json.Unmarshal(j, obj); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return obj
}

// asMap renders obj as generic JSON, to compare with a manifest of what Kubernetes stores.
func asMap(t *testing.T, obj any) map[string]any {
	t.Helper()
	b, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

var (
	podGVK         = schema.GroupVersionKind{Version: "v1", Kind: "Pod"}
	serviceGVK     = schema.GroupVersionKind{Version: "v1", Kind: "Service"}
	secretGVK      = schema.GroupVersionKind{Version: "v1", Kind: "Secret"}
	namespaceGVK   = schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}
	rcGVK          = schema.GroupVersionKind{Version: "v1", Kind: "ReplicationController"}
	deploymentGVK  = schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
	replicaSetGVK  = schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "ReplicaSet"}
	daemonSetGVK   = schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "DaemonSet"}
	statefulSetGVK = schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "StatefulSet"}
	jobGVK         = schema.GroupVersionKind{Group: "batch", Version: "v1", Kind: "Job"}
	cronJobGVK     = schema.GroupVersionKind{Group: "batch", Version: "v1", Kind: "CronJob"}
)

// The template spec Kubernetes stores for a one-container template (as `kubectl get -o yaml` shows).
const defaultedTemplateSpec = `
      containers:
      - name: server
        image: gcr.io/google-samples/microservices-demo/emailservice:v0.7.0
        imagePullPolicy: IfNotPresent
        resources: {}
        terminationMessagePath: /dev/termination-log
        terminationMessagePolicy: File
      dnsPolicy: ClusterFirst
      restartPolicy: Always
      schedulerName: default-scheduler
      securityContext: {}
      terminationGracePeriodSeconds: 30
`

// TestApplyMatchesKubernetes applies defaults to the seed documents' manifests and compares the
// result with what a Kubernetes API server stores for them.
func TestApplyMatchesKubernetes(t *testing.T) {
	tests := []struct {
		name       string
		gvk        schema.GroupVersionKind
		in, want   string
		uid        string
		onlyFields []string // compare only these top-level fields (others hold server-set data)
	}{
		{
			name: "pod of seed 003",
			gvk:  podGVK,
			in: `
metadata: {name: emailservice-pod-test, labels: {project: online-boutique, env: prod, release: v0.7.0-stable}}
spec:
  containers:
  - name: server
    image: gcr.io/google-samples/microservices-demo/emailservice:v0.7.0
`,
			want: `
metadata: {name: emailservice-pod-test, labels: {project: online-boutique, env: prod, release: v0.7.0-stable}}
spec:
  containers:
  - name: server
    image: gcr.io/google-samples/microservices-demo/emailservice:v0.7.0
    imagePullPolicy: IfNotPresent
    resources: {}
    terminationMessagePath: /dev/termination-log
    terminationMessagePolicy: File
  dnsPolicy: ClusterFirst
  enableServiceLinks: true
  preemptionPolicy: PreemptLowerPriority
  priority: 0
  restartPolicy: Always
  schedulerName: default-scheduler
  securityContext: {}
  serviceAccount: default
  serviceAccountName: default
  terminationGracePeriodSeconds: 30
  tolerations:
  - {effect: NoExecute, key: node.kubernetes.io/not-ready, operator: Exists, tolerationSeconds: 300}
  - {effect: NoExecute, key: node.kubernetes.io/unreachable, operator: Exists, tolerationSeconds: 300}
status: {}
`,
		},
		{
			name: "pod with probes, ports, env, volumes, limits",
			gvk:  podGVK,
			in: `
metadata: {name: liveness-http}
spec:
  tolerations: [{operator: Exists}]
  containers:
  - name: nginx
    image: nginx
    ports: [{containerPort: 80}]
    env:
    - name: POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    resources: {limits: {cpu: 500m, memory: 128Mi}}
    livenessProbe:
      httpGet: {port: 80}
      initialDelaySeconds: 30
    readinessProbe:
      tcpSocket: {port: 80}
    volumeMounts: [{name: cfg, mountPath: /etc/cfg}, {name: scratch, mountPath: /tmp}]
  volumes:
  - {name: cfg, configMap: {name: email-templates}}
  - {name: sec, secret: {secretName: s}}
  - {name: scratch}
`,
			onlyFields: []string{"spec"},
			want: `
spec:
  tolerations: [{operator: Exists}]
  containers:
  - name: nginx
    image: nginx
    imagePullPolicy: Always
    ports: [{containerPort: 80, protocol: TCP}]
    env:
    - name: POD_NAME
      valueFrom: {fieldRef: {apiVersion: v1, fieldPath: metadata.name}}
    resources: {limits: {cpu: 500m, memory: 128Mi}, requests: {cpu: 500m, memory: 128Mi}}
    livenessProbe:
      httpGet: {path: /, port: 80, scheme: HTTP}
      initialDelaySeconds: 30
      timeoutSeconds: 1
      periodSeconds: 10
      successThreshold: 1
      failureThreshold: 3
    readinessProbe:
      tcpSocket: {port: 80}
      timeoutSeconds: 1
      periodSeconds: 10
      successThreshold: 1
      failureThreshold: 3
    terminationMessagePath: /dev/termination-log
    terminationMessagePolicy: File
    volumeMounts: [{name: cfg, mountPath: /etc/cfg}, {name: scratch, mountPath: /tmp}]
  volumes:
  - {name: cfg, configMap: {name: email-templates, defaultMode: 420}}
  - {name: sec, secret: {secretName: s, defaultMode: 420}}
  - {name: scratch, emptyDir: {}}
  dnsPolicy: ClusterFirst
  enableServiceLinks: true
  preemptionPolicy: PreemptLowerPriority
  priority: 0
  restartPolicy: Always
  schedulerName: default-scheduler
  securityContext: {}
  serviceAccount: default
  serviceAccountName: default
  terminationGracePeriodSeconds: 30
`,
		},
		{
			name: "deployment of seed 003",
			gvk:  deploymentGVK,
			in: `
metadata: {name: emailservice-deployment-demo, labels: {app: emailservice-demo}}
spec:
  replicas: 3
  selector: {matchLabels: {app: emailservice-demo}}
  template:
    metadata: {labels: {app: emailservice-demo}}
    spec:
      containers:
      - name: server
        image: gcr.io/google-samples/microservices-demo/emailservice:v0.7.0
`,
			onlyFields: []string{"spec"},
			want: `
spec:
  progressDeadlineSeconds: 600
  replicas: 3
  revisionHistoryLimit: 10
  selector: {matchLabels: {app: emailservice-demo}}
  strategy:
    rollingUpdate: {maxSurge: 25%, maxUnavailable: 25%}
    type: RollingUpdate
  template:
    metadata: {labels: {app: emailservice-demo}}
    spec:` + defaultedTemplateSpec,
		},
		{
			name: "deployment without replicas",
			gvk:  deploymentGVK,
			in: `
metadata: {name: k8s-for-beginners}
spec:
  selector: {matchLabels: {tier: frontend}}
  strategy: {type: Recreate}
  template:
    metadata: {labels: {tier: frontend}}
    spec:
      containers:
      - name: server
        image: gcr.io/google-samples/microservices-demo/emailservice:v0.7.0
`,
			onlyFields: []string{"spec"},
			want: `
spec:
  progressDeadlineSeconds: 600
  replicas: 1
  revisionHistoryLimit: 10
  selector: {matchLabels: {tier: frontend}}
  strategy: {type: Recreate}
  template:
    metadata: {labels: {tier: frontend}}
    spec:` + defaultedTemplateSpec,
		},
		{
			name: "service of seed 003",
			gvk:  serviceGVK,
			in: `
metadata: {name: my-emailservice}
spec:
  selector: {app: emailservice-demo}
  ports: [{protocol: TCP, port: 8080, targetPort: 8080}]
`,
			onlyFields: []string{"spec"},
			want: `
spec:
  internalTrafficPolicy: Cluster
  ipFamilies: [IPv4]
  ipFamilyPolicy: SingleStack
  ports: [{protocol: TCP, port: 8080, targetPort: 8080}]
  selector: {app: emailservice-demo}
  sessionAffinity: None
  type: ClusterIP
`,
		},
		{
			name: "nodeport service, no targetPort",
			gvk:  serviceGVK,
			in: `
metadata: {name: my-emailservice-external}
spec:
  type: NodePort
  selector: {app: emailservice-demo}
  ports: [{nodePort: 30002, port: 8080}]
`,
			onlyFields: []string{"spec"},
			want: `
spec:
  externalTrafficPolicy: Cluster
  internalTrafficPolicy: Cluster
  ipFamilies: [IPv4]
  ipFamilyPolicy: SingleStack
  ports: [{protocol: TCP, nodePort: 30002, port: 8080, targetPort: 8080}]
  selector: {app: emailservice-demo}
  sessionAffinity: None
  type: NodePort
`,
		},
		{
			name: "external name service",
			gvk:  serviceGVK,
			in:   `{metadata: {name: db}, spec: {type: ExternalName, externalName: db.example.com}}`,
			want: `{metadata: {name: db}, spec: {type: ExternalName, externalName: db.example.com, sessionAffinity: None}, status: {loadBalancer: {}}}`,
		},
		{
			name: "secret with stringData",
			gvk:  secretGVK,
			in:   `{metadata: {name: s}, stringData: {username: online-boutique-emailer}, data: {password: Mzk1MjgkdmRnN0pi}}`,
			want: `{metadata: {name: s}, type: Opaque, data: {username: b25saW5lLWJvdXRpcXVlLWVtYWlsZXI=, password: Mzk1MjgkdmRnN0pi}}`,
		},
		{
			name: "namespace",
			gvk:  namespaceGVK,
			in:   `{metadata: {name: dev}}`,
			want: `{metadata: {name: dev, labels: {kubernetes.io/metadata.name: dev}}, spec: {}, status: {phase: Active}}`,
		},
		{
			name: "replication controller takes selector and labels from its template",
			gvk:  rcGVK,
			in: `
metadata: {name: nginx-www}
spec:
  template:
    metadata: {labels: {app: nginx}}
    spec: {containers: [{name: nginx, image: "nginx:1.7.9", ports: [{containerPort: 80}]}]}
`,
			want: `
metadata: {name: nginx-www, labels: {app: nginx}}
spec:
  replicas: 1
  selector: {app: nginx}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      containers:
      - {name: nginx, image: "nginx:1.7.9", imagePullPolicy: IfNotPresent, ports: [{containerPort: 80, protocol: TCP}], resources: {},
         terminationMessagePath: /dev/termination-log, terminationMessagePolicy: File}
      dnsPolicy: ClusterFirst
      restartPolicy: Always
      schedulerName: default-scheduler
      securityContext: {}
      terminationGracePeriodSeconds: 30
status: {replicas: 0}
`,
		},
		{
			name: "replicaset",
			gvk:  replicaSetGVK,
			in: `
metadata: {name: emailservice-replicaset-demo}
spec:
  selector: {matchLabels: {app: emailservice-demo}}
  template:
    metadata: {labels: {app: emailservice-demo}}
    spec: {containers: [{name: server, image: "gcr.io/google-samples/microservices-demo/emailservice:v0.7.0"}]}
`,
			onlyFields: []string{"spec"},
			want: `
spec:
  replicas: 1
  selector: {matchLabels: {app: emailservice-demo}}
  template:
    metadata: {labels: {app: emailservice-demo}}
    spec:` + defaultedTemplateSpec,
		},
		{
			name: "daemonset",
			gvk:  daemonSetGVK,
			in: `
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: emailservice-demo}}
  template:
    metadata: {labels: {app: emailservice-demo}}
    spec: {containers: [{name: server, image: "gcr.io/google-samples/microservices-demo/emailservice:v0.7.0"}]}
`,
			onlyFields: []string{"spec"},
			want: `
spec:
  revisionHistoryLimit: 10
  selector: {matchLabels: {app: emailservice-demo}}
  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 0, maxUnavailable: 1}}
  template:
    metadata: {labels: {app: emailservice-demo}}
    spec:` + defaultedTemplateSpec,
		},
		{
			name: "statefulset",
			gvk:  statefulSetGVK,
			in: `
metadata: {name: web}
spec:
  serviceName: nginx
  replicas: 3
  selector: {matchLabels: {app: emailservice-demo}}
  template:
    metadata: {labels: {app: emailservice-demo}}
    spec: {containers: [{name: server, image: "gcr.io/google-samples/microservices-demo/emailservice:v0.7.0"}]}
`,
			onlyFields: []string{"spec"},
			want: `
spec:
  persistentVolumeClaimRetentionPolicy: {whenDeleted: Retain, whenScaled: Retain}
  podManagementPolicy: OrderedReady
  replicas: 3
  revisionHistoryLimit: 10
  serviceName: nginx
  selector: {matchLabels: {app: emailservice-demo}}
  updateStrategy: {type: RollingUpdate, rollingUpdate: {partition: 0}}
  template:
    metadata: {labels: {app: emailservice-demo}}
    spec:` + defaultedTemplateSpec,
		},
		{
			name: "job gets the selector and labels generated from its uid",
			gvk:  jobGVK,
			uid:  "6f1e4b1c-0000-4000-8000-000000000001",
			in: `
metadata: {name: pi}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: pi, image: "perl:5.34.0", command: [perl]}]
`,
			onlyFields: []string{"metadata", "spec"},
			want: `
metadata:
  name: pi
  uid: 6f1e4b1c-0000-4000-8000-000000000001
  labels:
    batch.kubernetes.io/controller-uid: 6f1e4b1c-0000-4000-8000-000000000001
    batch.kubernetes.io/job-name: pi
    controller-uid: 6f1e4b1c-0000-4000-8000-000000000001
    job-name: pi
spec:
  backoffLimit: 6
  completionMode: NonIndexed
  completions: 1
  parallelism: 1
  podReplacementPolicy: TerminatingOrFailed
  suspend: false
  selector: {matchLabels: {batch.kubernetes.io/controller-uid: 6f1e4b1c-0000-4000-8000-000000000001}}
  template:
    metadata:
      labels:
        batch.kubernetes.io/controller-uid: 6f1e4b1c-0000-4000-8000-000000000001
        batch.kubernetes.io/job-name: pi
        controller-uid: 6f1e4b1c-0000-4000-8000-000000000001
        job-name: pi
    spec:
      containers:
      - {name: pi, image: "perl:5.34.0", command: [perl], imagePullPolicy: IfNotPresent, resources: {},
         terminationMessagePath: /dev/termination-log, terminationMessagePolicy: File}
      dnsPolicy: ClusterFirst
      restartPolicy: Never
      schedulerName: default-scheduler
      securityContext: {}
      terminationGracePeriodSeconds: 30
`,
		},
		{
			name: "cronjob of seed 001",
			gvk:  cronJobGVK,
			in: `
metadata: {name: hello}
spec:
  schedule: "*/1 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: hello, image: busybox, args: [/bin/sh, -c, date; echo Hello from the Kubernetes cluster]}]
`,
			onlyFields: []string{"spec"},
			want: `
spec:
  concurrencyPolicy: Allow
  failedJobsHistoryLimit: 1
  schedule: "*/1 * * * *"
  successfulJobsHistoryLimit: 3
  suspend: false
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - {name: hello, image: busybox, args: [/bin/sh, -c, date; echo Hello from the Kubernetes cluster], imagePullPolicy: Always,
             resources: {}, terminationMessagePath: /dev/termination-log, terminationMessagePolicy: File}
          dnsPolicy: ClusterFirst
          restartPolicy: OnFailure
          schedulerName: default-scheduler
          securityContext: {}
          terminationGracePeriodSeconds: 30
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := decode(t, tt.gvk, tt.in)
			if tt.uid != "" {
				obj.(interface{ SetUID(types.UID) }).SetUID(types.UID(tt.uid))
			}
			apply(obj)
			got := asMap(t, obj)
			want := asMap(t, decode(t, tt.gvk, tt.want))
			if tt.onlyFields != nil {
				g, w := map[string]any{}, map[string]any{}
				for _, f := range tt.onlyFields {
					g[f], w[f] = got[f], want[f]
				}
				got, want = g, w
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("defaults differ from Kubernetes' (-want +got):\n%s", diff)
			}
			again := obj.DeepCopyObject()
			apply(again)
			if diff := cmp.Diff(asMap(t, obj), asMap(t, again)); diff != "" {
				t.Errorf("Apply is not idempotent (-once +twice):\n%s", diff)
			}
		})
	}
}

func TestImagePullPolicy(t *testing.T) {
	tests := []struct {
		image string
		want  corev1.PullPolicy
	}{
		{"nginx", corev1.PullAlways},
		{"nginx:latest", corev1.PullAlways},
		{"nginx:1.7.9", corev1.PullIfNotPresent},
		{"gcr.io/google-samples/microservices-demo/emailservice:v0.7.0", corev1.PullIfNotPresent},
		{"localhost:5000/busybox", corev1.PullAlways},
		{"localhost:5000/busybox:1.36", corev1.PullIfNotPresent},
		{"busybox@sha256:" + "a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4", corev1.PullIfNotPresent},
		{"busybox:latest@sha256:" + "a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4", corev1.PullAlways},
		{"", corev1.PullIfNotPresent},
		{"Not A Valid Image", corev1.PullIfNotPresent},
	}
	for _, tt := range tests {
		p := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: tt.image}}}}
		apply(p)
		if got := p.Spec.Containers[0].ImagePullPolicy; got != tt.want {
			t.Errorf("image %q: imagePullPolicy %q, want %q", tt.image, got, tt.want)
		}
		p.Spec.Containers[0].ImagePullPolicy = corev1.PullNever
		apply(p)
		if got := p.Spec.Containers[0].ImagePullPolicy; got != corev1.PullNever {
			t.Errorf("image %q: a given policy was overwritten with %q", tt.image, got)
		}
	}
}

func TestJobWithoutUIDHasNoSelector(t *testing.T) {
	obj := decode(t, jobGVK, `{metadata: {name: pi}, spec: {template: {spec: {restartPolicy: Never, containers: [{name: pi, image: perl}]}}}}`)
	apply(obj)
	if j := obj.(*batchv1.Job); j.Spec.Selector != nil || j.Spec.Template.Labels != nil {
		t.Errorf("selector %v, template labels %v: want none before the uid is set", j.Spec.Selector, j.Spec.Template.Labels)
	}
}

func TestPodKeepsOwnTolerations(t *testing.T) {
	obj := decode(t, podGVK, `
metadata: {name: p}
spec:
  containers: [{name: c, image: busybox}]
  tolerations:
  - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 60}
`)
	apply(obj)
	got := obj.(*corev1.Pod).Spec.Tolerations
	if len(got) != 2 || *got[0].TolerationSeconds != 60 || got[1].Key != corev1.TaintNodeUnreachable {
		t.Errorf("tolerations %+v: want the pod's own not-ready one (60s) and the default unreachable one", got)
	}
}
