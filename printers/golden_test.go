package printers_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	cliprinters "k8s.io/cli-runtime/pkg/printers"
	"k8s.io/utils/ptr"

	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/printers"
)

// now is the fixed clock of the tests.
var now = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func ago(d time.Duration) metav1.Time { return metav1.NewTime(now.Add(-d)) }

func objectMeta(name string, age time.Duration) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: "default", CreationTimestamp: ago(age)}
}

var catalog = builtin.Catalog()

func kindOf(t *testing.T, group, kind string) *kinds.Kind {
	t.Helper()
	for _, k := range catalog.All() {
		if k.Group == group && k.Kind == kind {
			return k
		}
	}
	t.Fatalf("no kind %s/%s", group, kind)
	return nil
}

// render prints objs as kubectl prints the Table the server sends (-o wide when wide), keeping
// only the named columns (all of them when columns is nil).
func render(t *testing.T, k *kinds.Kind, objs []runtime.Object, columns []string, wide bool) string {
	t.Helper()
	table, err := printers.Printer{Now: func() time.Time { return now }}.Table(k, objs)
	if err != nil {
		t.Fatal(err)
	}
	if columns != nil {
		keep := map[int]bool{}
		var defs []metav1.TableColumnDefinition
		for _, name := range columns {
			found := false
			for i, d := range table.ColumnDefinitions {
				if strings.ToUpper(d.Name) == name {
					keep[i] = true
					defs = append(defs, d)
					found = true
				}
			}
			if !found {
				t.Fatalf("%s has no column %s", k.Kind, name)
			}
		}
		for r := range table.Rows {
			var cells []any
			for i, c := range table.Rows[r].Cells {
				if keep[i] {
					cells = append(cells, c)
				}
			}
			table.Rows[r].Cells = cells
		}
		table.ColumnDefinitions = defs
		wide = true
	}
	var out bytes.Buffer
	if err := cliprinters.NewTablePrinter(cliprinters.PrintOptions{Wide: wide}).PrintObj(table, &out); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// normalize collapses the padding that differs between kubectl versions.
func normalize(s string) string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	return strings.Join(lines, "\n")
}

func runningPod(name string, age time.Duration, restarts int32, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: objectMeta(name, age),
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "nginx"}}},
		Status: corev1.PodStatus{
			Phase:      corev1.PodRunning,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "c", Ready: true, RestartCount: restarts,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: ago(age)}}}},
		},
	}
}

func waitingPod(name string, age time.Duration, reason string, restarts int32, node string) *corev1.Pod {
	p := runningPod(name, age, restarts, node)
	p.Status.Phase = corev1.PodPending
	if reason == "CrashLoopBackOff" {
		p.Status.Phase = corev1.PodRunning
	}
	p.Status.Conditions = nil
	p.Status.ContainerStatuses[0].Ready = false
	p.Status.ContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}
	return p
}

func node(name string, age time.Duration, ready bool, roles ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: ago(age), Labels: map[string]string{}}}
	st := corev1.ConditionTrue
	if !ready {
		st = corev1.ConditionUnknown
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse}, {Type: corev1.NodeReady, Status: st}}
	for _, r := range roles {
		n.Labels["node-role.kubernetes.io/"+r] = ""
	}
	return n
}

func deployment(name string, age time.Duration, replicas, ready, updated, available int32) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: objectMeta(name, age),
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To(replicas), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "server", Image: "nginx"}}}}},
		Status: appsv1.DeploymentStatus{Replicas: updated, ReadyReplicas: ready, UpdatedReplicas: updated, AvailableReplicas: available},
	}
}

func service(name string, age time.Duration, typ corev1.ServiceType, ip string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: objectMeta(name, age),
		Spec: corev1.ServiceSpec{Type: typ, ClusterIP: ip, ClusterIPs: []string{ip}, Ports: ports}}
}

// TestSeedTables renders the objects behind the tables of the seed documents and compares the
// text with what the seeds show, padding aside. Old seeds were printed by older kubectl versions:
// those tables are compared on the columns that still exist, and only where the ages they show
// are ones today's HumanDuration prints (it shows 60-119s as "60s".."119s", and 1-3h in minutes).
func TestSeedTables(t *testing.T) {
	tests := []struct {
		name    string
		group   string
		kind    string
		objs    []runtime.Object
		columns []string
		want    string
	}{
		{
			name: "003: kubectl get pods -l release=v0.7.0-stable", kind: "Pod",
			objs: []runtime.Object{runningPod("emailservice-pod-test", 14*time.Second, 0, "minikube")},
			want: `
NAME READY STATUS RESTARTS AGE
emailservice-pod-test 1/1 Running 0 14s`,
		},
		{
			name: "003: a pod restarted 91 minutes ago", kind: "Pod",
			objs: []runtime.Object{func() runtime.Object {
				p := runningPod("emailservice-55df5dcf48-6xbgx", 19*time.Hour, 1, "minikube")
				p.Status.ContainerStatuses[0].LastTerminationState.Terminated = &corev1.ContainerStateTerminated{
					ExitCode: 2, Reason: "Error", FinishedAt: ago(91 * time.Minute)}
				return p
			}()},
			want: `
NAME READY STATUS RESTARTS AGE
emailservice-55df5dcf48-6xbgx 1/1 Running 1 (91m ago) 19h`,
		},
		{
			name: "003: kubectl get rs", group: "apps", kind: "ReplicaSet",
			objs: []runtime.Object{&appsv1.ReplicaSet{ObjectMeta: objectMeta("emailservice-deployment-demo-75675f5897", 18*time.Second),
				Spec:   appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](3)},
				Status: appsv1.ReplicaSetStatus{Replicas: 3, ReadyReplicas: 3}}},
			want: `
NAME DESIRED CURRENT READY AGE
emailservice-deployment-demo-75675f5897 3 3 3 18s`,
		},
		{
			name: "003: kubectl get secret", kind: "Secret",
			objs: []runtime.Object{&corev1.Secret{ObjectMeta: objectMeta("emailservice-user-pass", 126*time.Second), Type: corev1.SecretTypeOpaque,
				Data: map[string][]byte{"username": []byte("online-boutique-emailer"), "password": []byte("39528$vdg7Jb")}}},
			want: `
NAME TYPE DATA AGE
emailservice-user-pass Opaque 2 2m6s`,
		},
		{
			name: "003: a pod of a deployment", kind: "Pod",
			objs: []runtime.Object{runningPod("emailservice-deployment-demo-7484ddf954-pdbzz", 65*time.Second, 0, "minikube")},
			want: `
NAME READY STATUS RESTARTS AGE
emailservice-deployment-demo-7484ddf954-pdbzz 1/1 Running 0 65s`,
		},
		{
			name: "004: kubectl get nodes with the kubelet stopped", kind: "Node",
			objs: []runtime.Object{func() runtime.Object {
				n := node("minikube", 32*time.Hour, false, "master")
				n.Status.NodeInfo.KubeletVersion = "v1.16.2"
				return n
			}()},
			want: `
NAME STATUS ROLES AGE VERSION
minikube NotReady master 32h v1.16.2`,
		},
		{
			name: "004: a deployment with no replica set yet", group: "apps", kind: "Deployment",
			objs: []runtime.Object{deployment("k8s-for-beginners", 113*time.Second, 1, 0, 0, 0)},
			want: `
NAME READY UP-TO-DATE AVAILABLE AGE
k8s-for-beginners 0/1 0 0 113s`,
		},
		{
			name: "004: a deployment whose pod is not scheduled", group: "apps", kind: "Deployment",
			objs: []runtime.Object{deployment("k8s-for-beginners", 5*time.Minute+24*time.Second, 1, 0, 1, 0)},
			want: `
NAME READY UP-TO-DATE AVAILABLE AGE
k8s-for-beginners 0/1 1 0 5m24s`,
		},
		{
			name: "004: a deployment back to health", group: "apps", kind: "Deployment",
			objs: []runtime.Object{deployment("k8s-for-beginners", 11*time.Minute, 1, 1, 1, 1)},
			want: `
NAME READY UP-TO-DATE AVAILABLE AGE
k8s-for-beginners 1/1 1 1 11m`,
		},
		{
			name: "001: kubectl get service (minikube)", kind: "Service",
			objs: []runtime.Object{
				service("kubernetes", 6*time.Hour, corev1.ServiceTypeClusterIP, "10.96.0.1", corev1.ServicePort{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP}),
				service("web-service", 7*time.Minute, corev1.ServiceTypeNodePort, "10.104.107.132", corev1.ServicePort{Port: 80, NodePort: 32610, Protocol: corev1.ProtocolTCP}),
			},
			want: `
NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE
kubernetes ClusterIP 10.96.0.1 <none> 443/TCP 6h
web-service NodePort 10.104.107.132 <none> 80:32610/TCP 7m`,
		},
		{
			name: "001: kubectl get services (old kubectl, no TYPE column)", kind: "Service",
			columns: []string{"NAME", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"},
			objs: []runtime.Object{
				service("kubernetes", 3*time.Hour, corev1.ServiceTypeClusterIP, "10.254.0.1", corev1.ServicePort{Port: 443, Protocol: corev1.ProtocolTCP}),
				service("nginx-service", 10*time.Second, corev1.ServiceTypeClusterIP, "10.254.110.127", corev1.ServicePort{Port: 8000, Protocol: corev1.ProtocolTCP}),
			},
			want: `
NAME            CLUSTER-IP       EXTERNAL-IP   PORT(S)    AGE
kubernetes      10.254.0.1       <none>        443/TCP    3h
nginx-service   10.254.110.127   <none>        8000/TCP   10s`,
		},
		{
			name: "001: kubectl get pods while the image is pulled", kind: "Pod",
			objs: []runtime.Object{waitingPod("nginx", 2*time.Second, "ContainerCreating", 0, "k8s.minion1.dev")},
			want: `
NAME      READY     STATUS              RESTARTS   AGE
nginx     0/1       ContainerCreating   0          2s`,
		},
		{
			name: "001: kubectl get pods of a replication controller", kind: "Pod",
			objs: []runtime.Object{
				runningPod("nginx-www-3cck4", 12*time.Second, 0, "k8s.minion1.dev"),
				runningPod("nginx-www-416ct", 11*time.Minute, 0, "k8s.minion2.dev"),
				runningPod("nginx-www-ax41w", 11*time.Minute, 0, "k8s.minion3.dev"),
			},
			want: `
NAME              READY     STATUS    RESTARTS   AGE
nginx-www-3cck4   1/1       Running   0          12s
nginx-www-416ct   1/1       Running   0          11m
nginx-www-ax41w   1/1       Running   0          11m`,
		},
		{
			name: "001: kubectl -o wide get pods (old kubectl: NODE only)", kind: "Pod",
			columns: []string{"NAME", "READY", "STATUS", "RESTARTS", "AGE", "NODE"},
			objs: []runtime.Object{
				waitingPod("myexample-3534121234-mpr35", 39*time.Minute, "CrashLoopBackOff", 12, "k8s.minion3.dev"),
				runningPod("mysample-2812764540-74c5h", 41*time.Minute, 0, "k8s.minion2.dev"),
			},
			want: `
NAME                         READY     STATUS             RESTARTS   AGE       NODE
myexample-3534121234-mpr35   0/1       CrashLoopBackOff   12         39m       k8s.minion3.dev
mysample-2812764540-74c5h    1/1       Running            0          41m       k8s.minion2.dev`,
		},
		{
			name: "001: kubectl get pods -o wide with IP", kind: "Pod",
			columns: []string{"NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"},
			objs: []runtime.Object{func() runtime.Object {
				p := runningPod("busybox", 48*time.Hour, 9, "k8s.worker01.local")
				p.Status.PodIPs = []corev1.PodIP{{IP: "10.244.2.22"}}
				return p
			}()},
			want: `
NAME     READY     STATUS    RESTARTS   AGE       IP            NODE
busybox  1/1       Running   9          2d        10.244.2.22   k8s.worker01.local`,
		},
		{
			name: "001: kubectl get nodes (old kubectl: no ROLES, VERSION)", kind: "Node",
			columns: []string{"NAME", "STATUS", "AGE"},
			objs: []runtime.Object{
				node("k8s.minion1.dev", 20*time.Minute, true),
				node("k8s.minion2.dev", 12*time.Minute, true),
				node("k8s.minion3.dev", 12*time.Minute, true),
			},
			want: `
NAME              STATUS    AGE
k8s.minion1.dev   Ready     20m
k8s.minion2.dev   Ready     12m
k8s.minion3.dev   Ready     12m`,
		},
		{
			name: "001: kubectl get deployments (old kubectl: DESIRED, CURRENT gone)", group: "apps", kind: "Deployment",
			columns: []string{"NAME", "UP-TO-DATE", "AVAILABLE", "AGE"},
			objs:    []runtime.Object{deployment("nginx-deployment-prod", 44*time.Second, 1, 1, 1, 1)},
			want: `
NAME                    UP-TO-DATE   AVAILABLE   AGE
nginx-deployment-prod   1            1           44s`,
		},
		{
			name: "001: kubectl get cronjob hello, never run (old kubectl: no TIMEZONE)", group: "batch", kind: "CronJob",
			columns: []string{"NAME", "SCHEDULE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE"},
			objs: []runtime.Object{&batchv1.CronJob{ObjectMeta: objectMeta("hello", 11*time.Second),
				Spec: batchv1.CronJobSpec{Schedule: "*/1 * * * *", Suspend: ptr.To(false)}}},
			want: `
NAME      SCHEDULE      SUSPEND   ACTIVE    LAST SCHEDULE   AGE
hello     */1 * * * *   False     0         <none>          11s`,
		},
		{
			name: "001: kubectl get cronjob hello after a run", group: "batch", kind: "CronJob",
			columns: []string{"NAME", "SCHEDULE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE"},
			objs: []runtime.Object{&batchv1.CronJob{ObjectMeta: objectMeta("hello", 48*time.Second),
				Spec:   batchv1.CronJobSpec{Schedule: "*/1 * * * *", Suspend: ptr.To(false)},
				Status: batchv1.CronJobStatus{LastScheduleTime: ptr.To(ago(22 * time.Second))}}},
			want: `
NAME      SCHEDULE      SUSPEND   ACTIVE    LAST SCHEDULE   AGE
hello     */1 * * * *   False     0         22s             48s`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := render(t, kindOf(t, tt.group, tt.kind), tt.objs, tt.columns, false)
			if normalize(got) != normalize(tt.want) {
				t.Errorf("kubectl would print\n%s\nthe seed shows\n%s", got, strings.TrimPrefix(tt.want, "\n"))
			}
		})
	}
}

// TestIngressTables checks Ingress and IngressClass rows against Kubernetes' printer: no class
// is <none>, hosts are the first three ("*" when none has one) and "+ N more...", the
// addresses sorted and distinct (IPs, else host names), PORTS "80, 443" with a TLS section;
// an IngressClass's parameters as Kind.group/name.
func TestIngressTables(t *testing.T) {
	rule := func(host string) networkingv1.IngressRule { return networkingv1.IngressRule{Host: host} }
	lb := func(in ...networkingv1.IngressLoadBalancerIngress) networkingv1.IngressStatus {
		return networkingv1.IngressStatus{LoadBalancer: networkingv1.IngressLoadBalancerStatus{Ingress: in}}
	}
	objs := []runtime.Object{
		&networkingv1.Ingress{ObjectMeta: objectMeta("plain", 5*time.Minute), Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{rule("")}}},
		&networkingv1.Ingress{ObjectMeta: objectMeta("many", 90*time.Second), Spec: networkingv1.IngressSpec{IngressClassName: ptr.To("logplane"),
			Rules: []networkingv1.IngressRule{rule("a.example.com"), rule(""), rule("b.example.com"), rule("c.example.com"), rule("d.example.com")},
			TLS:   []networkingv1.IngressTLS{{SecretName: "tls"}}},
			Status: lb(networkingv1.IngressLoadBalancerIngress{IP: "10.0.0.2"}, networkingv1.IngressLoadBalancerIngress{IP: "10.0.0.1"},
				networkingv1.IngressLoadBalancerIngress{IP: "10.0.0.2"}, networkingv1.IngressLoadBalancerIngress{Hostname: "lb.example.com"})},
	}
	want := `
NAME CLASS HOSTS ADDRESS PORTS AGE
plain <none> * 80 5m
many logplane a.example.com,b.example.com,c.example.com + 2 more... 10.0.0.1,10.0.0.2,lb.example.com 80, 443 90s`
	if got := render(t, kindOf(t, "networking.k8s.io", "Ingress"), objs, nil, false); normalize(got) != normalize(want) {
		t.Errorf("ingresses:\n%s\nwant\n%s", got, want)
	}
	classes := []runtime.Object{
		&networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "logplane", CreationTimestamp: ago(time.Hour)}, Spec: networkingv1.IngressClassSpec{Controller: "logplane.io/ingress"}},
		&networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "nginx", CreationTimestamp: ago(time.Hour)}, Spec: networkingv1.IngressClassSpec{Controller: "k8s.io/ingress-nginx",
			Parameters: &networkingv1.IngressClassParametersReference{APIGroup: ptr.To("k8s.example.com"), Kind: "IngressParameters", Name: "external-lb"}}},
	}
	want = `
NAME CONTROLLER PARAMETERS AGE
logplane logplane.io/ingress <none> 60m
nginx k8s.io/ingress-nginx IngressParameters.k8s.example.com/external-lb 60m`
	if got := render(t, kindOf(t, "networking.k8s.io", "IngressClass"), classes, nil, false); normalize(got) != normalize(want) {
		t.Errorf("ingress classes:\n%s\nwant\n%s", got, want)
	}
}
