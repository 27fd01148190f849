package apiserver_test

import (
	"net/netip"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/logplane/logplane/apiserver/apiservertest"
)

// These tests are answers the Kubernetes conformance suite found wrong.

func deployment(name string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
			},
		},
	}
}

// TestStatusPatchKeepsMetadata: a patch of the status subresource that also changes metadata
// keeps the metadata change, as Kubernetes' status strategies do; a Deployment's status
// strategy alone resets the labels, and a Pod's its owner references.
func TestStatusPatchKeepsMetadata(t *testing.T) {
	needKubectl(t)
	s := apiservertest.Start(t, apiservertest.Options{})
	cs := clientset(t, s)
	ctx := t.Context()
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod("st"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.AppsV1().Deployments("default").Create(ctx, deployment("st"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	must(t, s, "", []string{"pod/st patched"}, "patch", "pod", "st", "--subresource=status", "--type=merge", "-p",
		`{"metadata":{"annotations":{"seen":"yes"},"labels":{"extra":"1"},"ownerReferences":[{"apiVersion":"v1","kind":"ConfigMap","name":"x","uid":"u"}]},"status":{"message":"hello"}}`)
	p, err := cs.CoreV1().Pods("default").Get(ctx, "st", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Status.Message != "hello" || p.Annotations["seen"] != "yes" || p.Labels["extra"] != "1" || len(p.OwnerReferences) != 0 {
		t.Fatalf("pod after a status patch: status %q, annotations %v, labels %v, owners %v", p.Status.Message, p.Annotations, p.Labels, p.OwnerReferences)
	}
	must(t, s, "", []string{"deployment.apps/st patched"}, "patch", "deployment", "st", "--subresource=status", "--type=merge", "-p",
		`{"metadata":{"annotations":{"seen":"yes"},"labels":{"extra":"1"}},"status":{"observedGeneration":1}}`)
	d, err := cs.AppsV1().Deployments("default").Get(ctx, "st", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Status.ObservedGeneration != 1 || d.Annotations["seen"] != "yes" || d.Labels["extra"] != "" {
		t.Fatalf("deployment after a status patch: status %+v, annotations %v, labels %v", d.Status, d.Annotations, d.Labels)
	}
	// UpdateStatus (PUT) keeps metadata changes too.
	d.Annotations["put"] = "yes"
	d.Status.ObservedGeneration = 2
	d, err = cs.AppsV1().Deployments("default").UpdateStatus(ctx, d, metav1.UpdateOptions{})
	if err != nil || d.Annotations["put"] != "yes" || d.Status.ObservedGeneration != 2 || d.Generation != 1 {
		t.Fatalf("deployment after a status update: %v %+v", err, d)
	}
}

// TestBindingKeepsGeneration: binding a pod sets spec.nodeName without bumping
// metadata.generation (Kubernetes' binding storage writes the pod directly), while a spec
// update of a pod does bump it (PodObservedGenerationTracking, on in 1.34).
func TestBindingKeepsGeneration(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{})
	cs := clientset(t, s)
	ctx := t.Context()
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod("gen"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	b := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: "gen"}, Target: corev1.ObjectReference{Kind: "Node", Name: "node-1"}}
	if err := cs.CoreV1().Pods("default").Bind(ctx, b, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p, err := cs.CoreV1().Pods("default").Get(ctx, "gen", metav1.GetOptions{})
	if err != nil || p.Spec.NodeName != "node-1" || p.Generation != 1 {
		t.Fatalf("bound pod: %v node %q generation %d, want node-1 and 1", err, p.Spec.NodeName, p.Generation)
	}
	p.Spec.Containers[0].Image = "busybox:1.36"
	p, err = cs.CoreV1().Pods("default").Update(ctx, p, metav1.UpdateOptions{})
	if err != nil || p.Generation != 2 {
		t.Fatalf("pod after an image change: %v generation %d, want 2", err, p.Generation)
	}
	// A pod with scheduling gates may not be bound.
	gated := pod("gated")
	gated.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "example.com/wait"}}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, gated, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	b.Name = "gated"
	if err := cs.CoreV1().Pods("default").Bind(ctx, b, metav1.CreateOptions{}); !apierrors.IsConflict(err) || !strings.Contains(err.Error(), "non-empty .spec.schedulingGates") {
		t.Fatalf("binding a gated pod: %v, want a conflict", err)
	}
}

// TestServiceTypeChangeAllocates: a Service that stops being ExternalName gets a cluster IP, one
// that becomes NodePort gets node ports, and one that becomes ExternalName again gives them up.
func TestServiceTypeChangeAllocates(t *testing.T) {
	needKubectl(t)
	s := apiservertest.Start(t, apiservertest.Options{})
	cs := clientset(t, s)
	ctx := t.Context()
	must(t, s, `apiVersion: v1
kind: Service
metadata:
  name: ext
spec:
  type: ExternalName
  externalName: example.com
`, []string{"service/ext created"}, "apply", "-f", "-")
	must(t, s, "", []string{"service/ext patched"}, "patch", "service", "ext", "-p",
		`{"spec":{"type":"ClusterIP","externalName":null,"ports":[{"port":80}]}}`)
	svc, err := cs.CoreV1().Services("default").Get(ctx, "ext", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ip, err := netip.ParseAddr(svc.Spec.ClusterIP)
	if err != nil || !netip.MustParsePrefix("10.96.0.0/16").Contains(ip) || len(svc.Spec.ClusterIPs) != 1 || svc.Spec.ClusterIPs[0] != svc.Spec.ClusterIP ||
		len(svc.Spec.IPFamilies) != 1 || svc.Spec.IPFamilyPolicy == nil {
		t.Fatalf("ExternalName → ClusterIP: clusterIP %q clusterIPs %v families %v policy %v", svc.Spec.ClusterIP, svc.Spec.ClusterIPs, svc.Spec.IPFamilies, svc.Spec.IPFamilyPolicy)
	}
	must(t, s, "", []string{"service/ext patched"}, "patch", "service", "ext", "-p", `{"spec":{"type":"NodePort"}}`)
	svc, err = cs.CoreV1().Services("default").Get(ctx, "ext", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if np := svc.Spec.Ports[0].NodePort; np < 30000 || np > 32767 || svc.Spec.ClusterIP != ip.String() {
		t.Fatalf("ClusterIP → NodePort: nodePort %d, clusterIP %q (was %s)", np, svc.Spec.ClusterIP, ip)
	}
	// A node port asked for by number that another Service holds is refused.
	other := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "other"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP,
		Ports: []corev1.ServicePort{{Port: 80}}}}
	if other, err = cs.CoreV1().Services("default").Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	other.Spec.Type = corev1.ServiceTypeNodePort
	other.Spec.Ports[0].NodePort = svc.Spec.Ports[0].NodePort
	if _, err := cs.CoreV1().Services("default").Update(ctx, other, metav1.UpdateOptions{}); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "provided port is already allocated") {
		t.Fatalf("taking another Service's node port: %v", err)
	}
	must(t, s, "", []string{"service/ext patched"}, "patch", "service", "ext", "--type=merge", "-p", `{"spec":{"type":"ExternalName","externalName":"example.com"}}`)
	svc, err = cs.CoreV1().Services("default").Get(ctx, "ext", metav1.GetOptions{})
	if err != nil || svc.Spec.ClusterIP != "" || len(svc.Spec.ClusterIPs) != 0 || svc.Spec.Ports[0].NodePort != 0 {
		t.Fatalf("NodePort → ExternalName: %v clusterIP %q clusterIPs %v nodePort %d", err, svc.Spec.ClusterIP, svc.Spec.ClusterIPs, svc.Spec.Ports[0].NodePort)
	}
}

// TestDeletePreconditions: a delete whose preconditions hold succeeds, even while another
// writer changes the object; one whose preconditions do not is a 409 with Kubernetes' message.
func TestDeletePreconditions(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{})
	cs := clientset(t, s)
	ctx := t.Context()
	d, err := cs.AppsV1().Deployments("default").Create(ctx, deployment("pre"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	err = cs.AppsV1().Deployments("default").Delete(ctx, "pre", metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: ptr.To(types.UID("not-the-uid"))}})
	if !apierrors.IsConflict(err) || !strings.Contains(err.Error(),
		`Operation cannot be fulfilled on Deployment.apps "pre": the UID in the precondition (not-the-uid) does not match the UID in record (`+string(d.UID)+`). The object might have been deleted and then recreated`) {
		t.Fatalf("delete with another uid: %v", err)
	}
	stale := d.ResourceVersion
	if _, err := cs.AppsV1().Deployments("default").Patch(ctx, "pre", types.MergePatchType, []byte(`{"metadata":{"annotations":{"a":"1"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	err = cs.AppsV1().Deployments("default").Delete(ctx, "pre", metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &stale}})
	if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), "the ResourceVersion in the precondition ("+stale+") does not match the ResourceVersion in record") {
		t.Fatalf("delete with a stale resourceVersion: %v", err)
	}
	// The matching uid, while a controller keeps writing the object's status: the delete
	// retries its compare-and-set on the fresh revision, whose uid still matches.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := int32(0); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_, err := cs.AppsV1().Deployments("default").Patch(ctx, "pre", types.MergePatchType,
				[]byte(`{"status":{"observedGeneration":`+strings.Repeat("1", int(i%5)+1)+`}}`), metav1.PatchOptions{}, "status")
			if apierrors.IsNotFound(err) {
				return
			}
		}
	}()
	err = cs.AppsV1().Deployments("default").Delete(ctx, "pre", metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &d.UID},
		PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)})
	close(stop)
	<-done
	if err != nil {
		t.Fatalf("delete with the object's uid: %v", err)
	}
	if _, err := cs.AppsV1().Deployments("default").Get(ctx, "pre", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("after the delete: %v", err)
	}
}

// TestPodValidationSysctlsAndSubPaths: Kubernetes' validation of sysctl names and of volume
// mounts' subPath and subPathExpr, with its messages, through kubectl.
func TestPodValidationSysctlsAndSubPaths(t *testing.T) {
	needKubectl(t)
	s := apiservertest.Start(t, apiservertest.Options{})
	manifest := func(extra string) string {
		return `apiVersion: v1
kind: Pod
metadata:
  name: bad
spec:
  volumes:
  - name: work
    emptyDir: {}
  containers:
  - name: c
    image: busybox
` + extra
	}
	for _, c := range []struct {
		name, extra string
		want        []string
	}{
		{"sysctl name", "  securityContext:\n    sysctls:\n    - name: kernel.shm_rmid_forced.\n      value: \"1\"\n    - name: Net.Core.Somaxconn\n      value: \"1\"\n",
			[]string{`spec.securityContext.sysctls[0].name: Invalid value: "kernel.shm_rmid_forced."`, `spec.securityContext.sysctls[1].name: Invalid value: "Net.Core.Somaxconn"`,
				"must have at most 253 characters and match regex ^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$"}},
		{"sysctl duplicate", "  securityContext:\n    sysctls:\n    - name: kernel.msgmax\n      value: \"1\"\n    - name: kernel.msgmax\n      value: \"2\"\n",
			[]string{`spec.securityContext.sysctls[1].name: Duplicate value: "kernel.msgmax"`}},
		{"sysctl empty", "  securityContext:\n    sysctls:\n    - name: \"\"\n      value: \"1\"\n",
			[]string{"spec.securityContext.sysctls[0].name: Required value"}},
		{"net sysctl with hostNetwork", "  hostNetwork: true\n  securityContext:\n    sysctls:\n    - name: net.ipv4.ip_local_port_range\n      value: \"1024 65535\"\n",
			[]string{`spec.securityContext.sysctls[0].name: Invalid value: "net.ipv4.ip_local_port_range": may not be specified when 'hostNetwork' is true`}},
		{"ipc sysctl with hostIPC", "  hostIPC: true\n  securityContext:\n    sysctls:\n    - name: kernel.shmmax\n      value: \"1\"\n",
			[]string{`spec.securityContext.sysctls[0].name: Invalid value: "kernel.shmmax": may not be specified when 'hostIPC' is true`}},
		{"subPathExpr and subPath", "    volumeMounts:\n    - name: work\n      mountPath: /w\n      subPath: a\n      subPathExpr: $(POD_NAME)\n",
			[]string{`spec.containers[0].volumeMounts[0].subPathExpr: Invalid value: "$(POD_NAME)": subPathExpr and subPath are mutually exclusive`}},
		{"subPathExpr absolute", "    volumeMounts:\n    - name: work\n      mountPath: /w\n      subPathExpr: /$(POD_NAME)\n",
			[]string{`spec.containers[0].volumeMounts.subPathExpr: Invalid value: "/$(POD_NAME)": must be a relative path`}},
		{"subPathExpr backstep", "    volumeMounts:\n    - name: work\n      mountPath: /w\n      subPathExpr: $(POD_NAME)/../x\n",
			[]string{`spec.containers[0].volumeMounts.subPathExpr: Invalid value: "$(POD_NAME)/../x": must not contain '..'`}},
		{"subPath backstep", "    volumeMounts:\n    - name: work\n      mountPath: /w\n      subPath: ../x\n",
			[]string{`spec.containers[0].volumeMounts.subPath: Invalid value: "../x": must not contain '..'`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			fails(t, s, manifest(c.extra), append([]string{`The Pod "bad" is invalid`}, c.want...), "create", "-f", "-")
		})
	}
	// Valid names (with '/' separators, as sysctl.d allows) pass.
	must(t, s, manifest("  securityContext:\n    sysctls:\n    - name: kernel.shm_rmid_forced\n      value: \"1\"\n    - name: net/ipv4/ping_group_range\n      value: \"0 1\"\n"),
		[]string{"pod/bad created"}, "create", "-f", "-")
}
