package printers_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/logplane/logplane/printers"
)

var fixed = printers.Printer{Now: func() time.Time { return now }}

func cellsOf(t *testing.T, group, kind string, obj runtime.Object) []any {
	t.Helper()
	row, err := fixed.Row(kindOf(t, group, kind), obj)
	if err != nil {
		t.Fatal(err)
	}
	return row.Cells
}

// TestColumns checks every kind's headers, as `kubectl get -o wide` prints them, and which
// are -o wide only.
func TestColumns(t *testing.T) {
	want := map[string]string{
		"/Pod":                                  "NAME READY STATUS RESTARTS AGE [IP] [NODE] [NOMINATED NODE] [READINESS GATES]",
		"/Service":                              "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE [SELECTOR]",
		"/Endpoints":                            "NAME ENDPOINTS AGE",
		"/ConfigMap":                            "NAME DATA AGE",
		"/Secret":                               "NAME TYPE DATA AGE",
		"/Event":                                "LAST SEEN TYPE REASON OBJECT [SUBOBJECT] [SOURCE] MESSAGE [FIRST SEEN] [COUNT] [NAME]",
		"events.k8s.io/Event":                   "LAST SEEN TYPE REASON OBJECT [SUBOBJECT] [SOURCE] MESSAGE [FIRST SEEN] [COUNT] [NAME]",
		"/Namespace":                            "NAME STATUS AGE",
		"/Node":                                 "NAME STATUS ROLES AGE VERSION [INTERNAL-IP] [EXTERNAL-IP] [OS-IMAGE] [KERNEL-VERSION] [CONTAINER-RUNTIME]",
		"/ServiceAccount":                       "NAME SECRETS AGE",
		"/PodTemplate":                          "NAME CONTAINERS IMAGES POD LABELS",
		"/ReplicationController":                "NAME DESIRED CURRENT READY AGE [CONTAINERS] [IMAGES] [SELECTOR]",
		"apps/Deployment":                       "NAME READY UP-TO-DATE AVAILABLE AGE [CONTAINERS] [IMAGES] [SELECTOR]",
		"apps/ReplicaSet":                       "NAME DESIRED CURRENT READY AGE [CONTAINERS] [IMAGES] [SELECTOR]",
		"apps/DaemonSet":                        "NAME DESIRED CURRENT READY UP-TO-DATE AVAILABLE NODE SELECTOR AGE [CONTAINERS] [IMAGES] [SELECTOR]",
		"apps/StatefulSet":                      "NAME READY AGE [CONTAINERS] [IMAGES]",
		"apps/ControllerRevision":               "NAME CONTROLLER REVISION AGE",
		"batch/Job":                             "NAME STATUS COMPLETIONS DURATION AGE [CONTAINERS] [IMAGES] [SELECTOR]",
		"batch/CronJob":                         "NAME SCHEDULE TIMEZONE SUSPEND ACTIVE LAST SCHEDULE AGE [CONTAINERS] [IMAGES] [SELECTOR]",
		"coordination.k8s.io/Lease":             "NAME HOLDER AGE",
		"discovery.k8s.io/EndpointSlice":        "NAME ADDRESSTYPE PORTS ENDPOINTS AGE",
		"rbac.authorization.k8s.io/Role":        "NAME CREATED AT",
		"rbac.authorization.k8s.io/ClusterRole": "NAME CREATED AT",
		"rbac.authorization.k8s.io/RoleBinding": "NAME ROLE AGE [USERS] [GROUPS] [SERVICEACCOUNTS]",
		"rbac.authorization.k8s.io/ClusterRoleBinding": "NAME ROLE AGE [USERS] [GROUPS] [SERVICEACCOUNTS]",
		"networking.k8s.io/NetworkPolicy":              "NAME POD-SELECTOR AGE",
		"networking.k8s.io/IPAddress":                  "NAME PARENTREF",
		"networking.k8s.io/ServiceCIDR":                "NAME CIDRS AGE",
		"networking.k8s.io/Ingress":                    "NAME CLASS HOSTS ADDRESS PORTS AGE",
		"networking.k8s.io/IngressClass":               "NAME CONTROLLER PARAMETERS AGE",
		"/PersistentVolume":                            "NAME CAPACITY ACCESS MODES RECLAIM POLICY STATUS CLAIM STORAGECLASS VOLUMEATTRIBUTESCLASS REASON AGE [VOLUMEMODE]",
		"/PersistentVolumeClaim":                       "NAME STATUS VOLUME CAPACITY ACCESS MODES STORAGECLASS VOLUMEATTRIBUTESCLASS AGE [VOLUMEMODE]",
		"storage.k8s.io/StorageClass":                  "NAME PROVISIONER RECLAIMPOLICY VOLUMEBINDINGMODE ALLOWVOLUMEEXPANSION AGE",
	}
	for _, k := range catalog.All() {
		var names []string
		for _, c := range printers.Columns(k) {
			n := strings.ToUpper(c.Name)
			if c.Priority > 0 {
				n = "[" + n + "]"
			}
			names = append(names, n)
			if c.Description == "" {
				t.Errorf("%s column %s has no description", k.Kind, c.Name)
			}
		}
		key := k.Group + "/" + k.Kind
		if got := strings.Join(names, " "); got != want[key] {
			t.Errorf("%s columns\n%s\nwant\n%s", key, got, want[key])
		}
	}
}

// TestEmptyObjects prints the zero object of every kind: a row, one cell per column, no error.
func TestEmptyObjects(t *testing.T) {
	for _, k := range catalog.All() {
		row, err := fixed.Row(k, k.New())
		if err != nil {
			t.Errorf("%s: %v", k.Kind, err)
			continue
		}
		if len(row.Cells) != len(printers.Columns(k)) {
			t.Errorf("%s: %d cells for %d columns", k.Kind, len(row.Cells), len(printers.Columns(k)))
		}
	}
	if _, err := fixed.Row(kindOf(t, "", "Pod"), &corev1.Service{}); err == nil {
		t.Error("a Service printed as a Pod: want an error")
	}
}

func container(name string, st corev1.ContainerState, ready bool, restarts int32) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, State: st, Ready: ready, RestartCount: restarts}
}

var (
	running = corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	waiting = func(r string) corev1.ContainerState {
		return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: r}}
	}
	terminated = func(code, signal int32, reason string) corev1.ContainerState {
		return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Signal: signal, Reason: reason}}
	}
)

// TestPodStatus covers the kubelet's reasons as `kubectl get pods` shows them.
func TestPodStatus(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	tests := []struct {
		name                    string
		pod                     corev1.Pod
		ready, status, restarts string
	}{
		{"pending, not scheduled", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending}}, "0/1", "Pending", "0"},
		{"container creating", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending,
			ContainerStatuses: []corev1.ContainerStatus{container("c", waiting("ContainerCreating"), false, 0)}}}, "0/1", "ContainerCreating", "0"},
		{"image pull error", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending,
			ContainerStatuses: []corev1.ContainerStatus{container("c", waiting("ErrImagePull"), false, 0)}}}, "0/1", "ErrImagePull", "0"},
		{"image pull back-off", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending,
			ContainerStatuses: []corev1.ContainerStatus{container("c", waiting("ImagePullBackOff"), false, 0)}}}, "0/1", "ImagePullBackOff", "0"},
		{"running", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning,
			ContainerStatuses: []corev1.ContainerStatus{container("c", running, true, 0)}}}, "1/1", "Running", "0"},
		{"running, not ready", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning,
			ContainerStatuses: []corev1.ContainerStatus{container("c", running, false, 0)}}}, "0/1", "Running", "0"},
		{"crash loop, restarted 5m ago", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning,
			ContainerStatuses: []corev1.ContainerStatus{{Name: "c", State: waiting("CrashLoopBackOff"), RestartCount: 4,
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error", FinishedAt: ago(5 * time.Minute)}}}}}},
			"0/1", "CrashLoopBackOff", "4 (5m ago)"},
		{"completed", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodSucceeded,
			ContainerStatuses: []corev1.ContainerStatus{container("c", terminated(0, 0, "Completed"), false, 0)}}}, "0/1", "Completed", "0"},
		{"error", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed,
			ContainerStatuses: []corev1.ContainerStatus{container("c", terminated(1, 0, "Error"), false, 0)}}}, "0/1", "Error", "0"},
		{"oom killed", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning,
			ContainerStatuses: []corev1.ContainerStatus{container("c", terminated(137, 0, "OOMKilled"), false, 2)}}}, "0/1", "OOMKilled", "2"},
		{"exit code without a reason", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed,
			ContainerStatuses: []corev1.ContainerStatus{container("c", terminated(3, 0, ""), false, 0)}}}, "0/1", "ExitCode:3", "0"},
		{"signal without a reason", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed,
			ContainerStatuses: []corev1.ContainerStatus{container("c", terminated(137, 9, ""), false, 0)}}}, "0/1", "Signal:9", "0"},
		{"terminating", corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: ptr.To(ago(time.Second))}, Status: corev1.PodStatus{Phase: corev1.PodRunning,
			ContainerStatuses: []corev1.ContainerStatus{container("c", running, true, 0)}}}, "1/1", "Terminating", "0"},
		{"deleted on a lost node", corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: ptr.To(ago(time.Second))},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, Reason: "NodeLost"}}, "0/1", "Unknown", "0"},
		{"evicted", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted"}}, "0/1", "Evicted", "0"},
		{"scheduling gated", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonSchedulingGated}}}}, "0/1", "SchedulingGated", "0"},
		{"one of two completed, the other running and ready", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning,
			Conditions:        []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			ContainerStatuses: []corev1.ContainerStatus{container("a", terminated(0, 0, "Completed"), false, 0), container("b", running, true, 0)}}},
			"1/2", "Running", "0"},
		{"one of two completed, the other running, pod not ready", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning,
			ContainerStatuses: []corev1.ContainerStatus{container("a", terminated(0, 0, "Completed"), false, 0), container("b", running, true, 0)}}},
			"1/2", "NotReady", "0"},
		{"init container running", corev1.Pod{
			Spec: corev1.PodSpec{InitContainers: []corev1.Container{{Name: "init"}}},
			Status: corev1.PodStatus{Phase: corev1.PodPending,
				InitContainerStatuses: []corev1.ContainerStatus{container("init", running, false, 0)},
				ContainerStatuses:     []corev1.ContainerStatus{container("c", waiting("PodInitializing"), false, 0)}}},
			"0/1", "Init:0/1", "0"},
		{"second init container crash looping", corev1.Pod{
			Spec: corev1.PodSpec{InitContainers: []corev1.Container{{Name: "a"}, {Name: "b"}}},
			Status: corev1.PodStatus{Phase: corev1.PodPending,
				InitContainerStatuses: []corev1.ContainerStatus{container("a", terminated(0, 0, "Completed"), false, 0), container("b", waiting("CrashLoopBackOff"), false, 3)},
				ContainerStatuses:     []corev1.ContainerStatus{container("c", waiting("PodInitializing"), false, 0)}}},
			"0/1", "Init:CrashLoopBackOff", "3"},
		{"init container failed", corev1.Pod{
			Spec: corev1.PodSpec{InitContainers: []corev1.Container{{Name: "a"}}},
			Status: corev1.PodStatus{Phase: corev1.PodFailed,
				InitContainerStatuses: []corev1.ContainerStatus{container("a", terminated(2, 0, ""), false, 0)}}},
			"0/1", "Init:ExitCode:2", "0"},
		{"sidecar started and ready counts", corev1.Pod{
			Spec: corev1.PodSpec{InitContainers: []corev1.Container{{Name: "proxy", RestartPolicy: &always}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning,
				Conditions:            []corev1.PodCondition{{Type: corev1.PodInitialized, Status: corev1.ConditionTrue}},
				InitContainerStatuses: []corev1.ContainerStatus{{Name: "proxy", State: running, Ready: true, Started: ptr.To(true), RestartCount: 1}},
				ContainerStatuses:     []corev1.ContainerStatus{container("c", running, true, 0)}}},
			"2/2", "Running", "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.pod
			p.Name = "p"
			p.CreationTimestamp = ago(time.Hour)
			if len(p.Spec.Containers) == 0 {
				p.Spec.Containers = []corev1.Container{{Name: "c"}}
				if len(p.Status.ContainerStatuses) == 2 {
					p.Spec.Containers = []corev1.Container{{Name: "a"}, {Name: "b"}}
				}
			}
			c := cellsOf(t, "", "Pod", &p)
			if got := []any{c[1], c[2], c[3]}; !cmp.Equal(got, []any{tt.ready, tt.status, tt.restarts}) {
				t.Errorf("READY STATUS RESTARTS = %q, want %q", got, []any{tt.ready, tt.status, tt.restarts})
			}
		})
	}
}

func TestPodWideAndConditions(t *testing.T) {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", CreationTimestamp: ago(3 * time.Minute)},
		Spec: corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "c"}},
			ReadinessGates: []corev1.PodReadinessGate{{ConditionType: "example.com/lb"}, {ConditionType: "example.com/dns"}}},
		Status: corev1.PodStatus{Phase: corev1.PodSucceeded, PodIP: "10.244.0.5", NominatedNodeName: "",
			Conditions: []corev1.PodCondition{{Type: "example.com/lb", Status: corev1.ConditionTrue}}},
	}
	row, err := fixed.Row(kindOf(t, "", "Pod"), p)
	if err != nil {
		t.Fatal(err)
	}
	want := []any{"web", "0/1", "Succeeded", "0", "3m", "10.244.0.5", "node-1", "<none>", "1/2"}
	if diff := cmp.Diff(want, row.Cells); diff != "" {
		t.Errorf("cells (-want +got):\n%s", diff)
	}
	if len(row.Conditions) != 1 || row.Conditions[0].Type != metav1.RowCompleted {
		t.Errorf("row conditions %v, want Completed", row.Conditions)
	}
}

// TestKindCells checks the cells of each kind against what Kubernetes prints.
func TestKindCells(t *testing.T) {
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: "default", CreationTimestamp: ago(10 * time.Minute)}
	}
	tmpl := corev1.PodTemplateSpec{Spec: corev1.PodSpec{
		NodeSelector: map[string]string{"disk": "ssd"},
		Containers:   []corev1.Container{{Name: "server", Image: "emailservice:v0.7.0"}, {Name: "proxy", Image: "envoy:1.30"}}}}
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"},
		MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"a", "b"}}}}
	tests := []struct {
		name, group, kind string
		obj               runtime.Object
		want              []any
	}{
		{"deployment", "apps", "Deployment", &appsv1.Deployment{ObjectMeta: meta("web"),
			Spec:   appsv1.DeploymentSpec{Replicas: ptr.To[int32](3), Selector: sel, Template: tmpl},
			Status: appsv1.DeploymentStatus{ReadyReplicas: 2, UpdatedReplicas: 3, AvailableReplicas: 2}},
			[]any{"web", "2/3", int64(3), int64(2), "10m", "server,proxy", "emailservice:v0.7.0,envoy:1.30", "app=web,tier in (a,b)"}},
		{"replication controller", "", "ReplicationController", &corev1.ReplicationController{ObjectMeta: meta("nginx-www"),
			Spec:   corev1.ReplicationControllerSpec{Replicas: ptr.To[int32](3), Selector: map[string]string{"app": "nginx"}, Template: &tmpl},
			Status: corev1.ReplicationControllerStatus{Replicas: 3, ReadyReplicas: 1}},
			[]any{"nginx-www", int64(3), int64(3), int64(1), "10m", "server,proxy", "emailservice:v0.7.0,envoy:1.30", "app=nginx"}},
		{"daemonset", "apps", "DaemonSet", &appsv1.DaemonSet{ObjectMeta: meta("agent"), Spec: appsv1.DaemonSetSpec{Selector: sel, Template: tmpl},
			Status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 3, CurrentNumberScheduled: 3, NumberReady: 2, UpdatedNumberScheduled: 3, NumberAvailable: 2}},
			[]any{"agent", int64(3), int64(3), int64(2), int64(3), int64(2), "disk=ssd", "10m", "server,proxy", "emailservice:v0.7.0,envoy:1.30", "app=web,tier in (a,b)"}},
		{"statefulset", "apps", "StatefulSet", &appsv1.StatefulSet{ObjectMeta: meta("db"), Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](3), Template: tmpl},
			Status: appsv1.StatefulSetStatus{ReadyReplicas: 1}},
			[]any{"db", "1/3", "10m", "server,proxy", "emailservice:v0.7.0,envoy:1.30"}},
		{"controller revision", "apps", "ControllerRevision", &appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Name: "db-7d8f", CreationTimestamp: ago(time.Minute),
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "db", Controller: ptr.To(true)}}}, Revision: 2},
			[]any{"db-7d8f", "statefulset.apps/db", int64(2), "60s"}},
		{"running job", "batch", "Job", &batchv1.Job{ObjectMeta: meta("pi"), Spec: batchv1.JobSpec{Completions: ptr.To[int32](1), Parallelism: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"batch.kubernetes.io/controller-uid": "u1"}}, Template: tmpl},
			Status: batchv1.JobStatus{StartTime: ptr.To(ago(95 * time.Second))}},
			[]any{"pi", "Running", "0/1", "95s", "10m", "server,proxy", "emailservice:v0.7.0,envoy:1.30", "batch.kubernetes.io/controller-uid=u1"}},
		{"complete job", "batch", "Job", &batchv1.Job{ObjectMeta: meta("pi"), Spec: batchv1.JobSpec{Parallelism: ptr.To[int32](2)},
			Status: batchv1.JobStatus{Succeeded: 1, StartTime: ptr.To(ago(5 * time.Minute)), CompletionTime: ptr.To(ago(4*time.Minute + 30*time.Second)),
				Conditions: []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}}},
			[]any{"pi", "Complete", "1/1 of 2", "30s", "10m", "", "", "<none>"}},
		{"suspended cronjob with a time zone", "batch", "CronJob", &batchv1.CronJob{ObjectMeta: meta("hello"),
			Spec:   batchv1.CronJobSpec{Schedule: "0 * * * *", TimeZone: ptr.To("Europe/Paris"), Suspend: ptr.To(true)},
			Status: batchv1.CronJobStatus{Active: []corev1.ObjectReference{{Name: "hello-1"}}}},
			[]any{"hello", "0 * * * *", "Europe/Paris", "True", int64(1), "<none>", "10m", "", "", "<none>"}},
		{"load balancer service", "", "Service", &corev1.Service{ObjectMeta: meta("lb"),
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ClusterIPs: []string{"10.96.0.20"}, ExternalIPs: []string{"192.0.2.9"},
				Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 80, NodePort: 30080, Protocol: corev1.ProtocolTCP}, {Port: 53, Protocol: corev1.ProtocolUDP}}},
			Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "203.0.113.7"}}}}},
			[]any{"lb", "LoadBalancer", "10.96.0.20", "203.0.113.7,192.0.2.9", "80:30080/TCP,53/UDP", "10m", "app=web"}},
		{"pending load balancer", "", "Service", &corev1.Service{ObjectMeta: meta("lb"),
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ClusterIP: "10.96.0.21", ClusterIPs: []string{"10.96.0.21"}}},
			[]any{"lb", "LoadBalancer", "10.96.0.21", "<pending>", "<none>", "10m", "<none>"}},
		{"external name service", "", "Service", &corev1.Service{ObjectMeta: meta("db"),
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com"}},
			[]any{"db", "ExternalName", "<none>", "db.example.com", "<none>", "10m", "<none>"}},
		{"endpoints", "", "Endpoints", &corev1.Endpoints{ObjectMeta: meta("my-emailservice"), Subsets: []corev1.EndpointSubset{{
			Addresses: []corev1.EndpointAddress{{IP: "10.244.0.48"}, {IP: "10.244.0.51"}, {IP: "10.244.0.58"}, {IP: "10.244.0.60"}},
			Ports:     []corev1.EndpointPort{{Port: 8080}}}}},
			[]any{"my-emailservice", "10.244.0.48:8080,10.244.0.51:8080,10.244.0.58:8080 + 1 more...", "10m"}},
		{"endpoints without subsets", "", "Endpoints", &corev1.Endpoints{ObjectMeta: meta("none")}, []any{"none", "<none>", "10m"}},
		{"endpoint slice", "discovery.k8s.io", "EndpointSlice", &discoveryv1.EndpointSlice{ObjectMeta: meta("web-abc"), AddressType: discoveryv1.AddressTypeIPv4,
			Ports:     []discoveryv1.EndpointPort{{Port: ptr.To[int32](8080)}, {Name: ptr.To("metrics")}},
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}}, {Addresses: []string{"10.0.0.2"}}}},
			[]any{"web-abc", "IPv4", "8080,metrics", "10.0.0.1,10.0.0.2", "10m"}},
		{"empty endpoint slice", "discovery.k8s.io", "EndpointSlice", &discoveryv1.EndpointSlice{ObjectMeta: meta("web-abc"), AddressType: discoveryv1.AddressTypeIPv4},
			[]any{"web-abc", "IPv4", "<unset>", "<unset>", "10m"}},
		{"configmap", "", "ConfigMap", &corev1.ConfigMap{ObjectMeta: meta("email-templates"), Data: map[string]string{"confirmation.html": "x"},
			BinaryData: map[string][]byte{"logo.png": {1}}}, []any{"email-templates", int64(2), "10m"}},
		{"service account", "", "ServiceAccount", &corev1.ServiceAccount{ObjectMeta: meta("default")}, []any{"default", int64(0), "10m"}},
		{"namespace", "", "Namespace", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "dev", CreationTimestamp: ago(3 * time.Hour)},
			Status: corev1.NamespaceStatus{Phase: corev1.NamespaceTerminating}}, []any{"dev", "Terminating", "3h"}},
		{"cordoned control plane node", "", "Node", &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: "n1", CreationTimestamp: ago(8 * 24 * time.Hour),
				Labels: map[string]string{"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "etcd", "node-role.kubernetes.io/": "x"}},
			Spec: corev1.NodeSpec{Unschedulable: true},
			Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
				Addresses: []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: "n1"}, {Type: corev1.NodeInternalIP, Address: "192.168.49.2"}},
				NodeInfo:  corev1.NodeSystemInfo{KubeletVersion: "v1.37.2", OSImage: "Debian GNU/Linux 12 (bookworm)", KernelVersion: "6.1.0", ContainerRuntimeVersion: "containerd://1.6.20"}}},
			[]any{"n1", "Ready,SchedulingDisabled", "control-plane,etcd", "8d", "v1.37.2", "192.168.49.2", "<none>", "Debian GNU/Linux 12 (bookworm)", "6.1.0", "containerd://1.6.20"}},
		{"node without conditions", "", "Node", &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n2", CreationTimestamp: ago(time.Hour)}},
			[]any{"n2", "Unknown", "<none>", "60m", "", "<none>", "<none>", "<unknown>", "<unknown>", "<unknown>"}},
		{"core event", "", "Event", &corev1.Event{ObjectMeta: meta("nginx.17a8"),
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "nginx", FieldPath: "spec.containers{nginx}"},
			Reason:         "Pulled", Message: "Container image \"nginx:1.7.9\" already present on machine\n", Type: corev1.EventTypeNormal,
			Source: corev1.EventSource{Component: "kubelet", Host: "minikube"}, FirstTimestamp: ago(21 * time.Minute), LastTimestamp: ago(20 * time.Minute), Count: 2},
			[]any{"20m", "Normal", "Pulled", "pod/nginx", "spec.containers{nginx}", "kubelet, minikube",
				"Container image \"nginx:1.7.9\" already present on machine", "21m", int64(2), "nginx.17a8"}},
		{"events.k8s.io event", "events.k8s.io", "Event", &eventsv1.Event{ObjectMeta: meta("web.1"),
			Regarding: corev1.ObjectReference{Kind: "Deployment", Name: "web"}, Reason: "ScalingReplicaSet", Note: "Scaled up replica set web-1 to 3",
			Type: corev1.EventTypeNormal, EventTime: metav1.NewMicroTime(now.Add(-30 * time.Second)), ReportingController: "deployment-controller"},
			[]any{"30s", "Normal", "ScalingReplicaSet", "deployment/web", "", "deployment-controller", "Scaled up replica set web-1 to 3", "30s", int64(1), "web.1"}},
		{"lease", "coordination.k8s.io", "Lease", &coordinationv1.Lease{ObjectMeta: meta("node-1"), Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("node-1")}},
			[]any{"node-1", "node-1", "10m"}},
		{"young object", "", "ConfigMap", &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c", CreationTimestamp: metav1.NewTime(now.Add(time.Minute))}},
			[]any{"c", int64(0), "<invalid>"}},
		{"object without a creation time", "", "ConfigMap", &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c"}},
			[]any{"c", int64(0), "<unknown>"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, cellsOf(t, tt.group, tt.kind, tt.obj)); diff != "" {
				t.Errorf("cells (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRealClock(t *testing.T) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c", CreationTimestamp: metav1.NewTime(time.Now().Add(-5 * time.Second))}}
	row, err := printers.Row(kindOf(t, "", "ConfigMap"), cm)
	if err != nil {
		t.Fatal(err)
	}
	if age := row.Cells[2].(string); age != "5s" && age != "6s" {
		t.Errorf("age %q, want 5s", age)
	}
}
