package apiserver_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/logplane/logplane/admission"
	"github.com/logplane/logplane/admission/podsecurity"
	"github.com/logplane/logplane/apiserver/apiservertest"
	"github.com/logplane/logplane/apiserver/logplaneapi"
)

// makeNamespace creates a namespace with labels and its default service account (no reconciler
// runs in these tests).
func makeNamespace(t *testing.T, cs kubernetes.Interface, name string, labels map[string]string) {
	t.Helper()
	if _, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(name).Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestPodSecurityAdmission runs the real kubectl against namespaces labelled with Pod Security
// levels: a privileged pod in a restricted namespace is refused with Kubernetes' 403 and message;
// in a namespace that only warns and audits it is created, kubectl prints the warning, and the
// audit trail holds the violation; a Deployment whose template violates the enforced level is
// created with a warning only, as on Kubernetes; an exempt namespace is not checked; invalid
// labels are refused.
func TestPodSecurityAdmission(t *testing.T) {
	apiservertest.NeedKubectl(t)
	cfg, err := podsecurity.LoadConfiguration([]byte(`apiVersion: pod-security.admission.config.k8s.io/v1
kind: PodSecurityConfiguration
defaults: {enforce: privileged, audit: privileged, warn: privileged}
exemptions: {namespaces: [exempt]}
`))
	if err != nil {
		t.Fatal(err)
	}
	s := apiservertest.Start(t, apiservertest.Options{Admission: &admission.Config{PodSecurity: cfg}})
	cs := kubernetes.NewForConfigOrDie(s.Config)
	restricted := map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}
	makeNamespace(t, cs, "locked", restricted)
	makeNamespace(t, cs, "watched", map[string]string{"pod-security.kubernetes.io/warn": "baseline", "pod-security.kubernetes.io/audit": "baseline"})
	makeNamespace(t, cs, "exempt", restricted)

	out, err := s.Kubectl(t, "", "run", "priv", "--image=busybox", "--privileged", "-n", "locked")
	want := `Error from server (Forbidden): pods "priv" is forbidden: violates PodSecurity "restricted:latest": privileged (container "priv" must not set securityContext.privileged=true), allowPrivilegeEscalation != false (container "priv" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "priv" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "priv" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "priv" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")`
	if err == nil || strings.TrimSpace(out) != want {
		t.Fatalf("privileged pod in a restricted namespace: %v\n%s\nwant\n%s", err, out, want)
	}
	priv := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "priv"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "priv", Image: "busybox",
		SecurityContext: &corev1.SecurityContext{Privileged: new(bool)}}}}}
	*priv.Spec.Containers[0].SecurityContext.Privileged = true
	_, err = cs.CoreV1().Pods("locked").Create(t.Context(), priv, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || err.(apierrors.APIStatus).Status().Code != http.StatusForbidden {
		t.Fatalf("client-go: %v, want 403", err)
	}
	if _, err := cs.CoreV1().Pods("locked").Get(t.Context(), "priv", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the refused pod exists: %v", err)
	}
	// A pod that meets the restricted level is admitted.
	if out, err := s.Kubectl(t, `apiVersion: v1
kind: Pod
metadata: {name: fine, namespace: locked}
spec:
  securityContext: {runAsNonRoot: true, runAsUser: 1000, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: c
    image: busybox
    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
`, "apply", "-f", "-"); err != nil {
		t.Fatalf("a restricted pod: %v\n%s", err, out)
	}

	// Warn and audit only: created, with kubectl's warning, and the audit trail says why.
	out, err = s.Kubectl(t, "", "run", "priv", "--image=busybox", "--privileged", "-n", "watched")
	if err != nil || !strings.Contains(out, `Warning: would violate PodSecurity "baseline:latest": privileged (container "priv" must not set securityContext.privileged=true)`) {
		t.Fatalf("privileged pod in a warn namespace: %v\n%s", err, out)
	}
	code, body := raw(t, s.Config, "GET", "/apis/logplane.io/v1alpha1/audit?namespace=watched&name=priv", nil, "")
	var audit logplaneapi.Audit
	if err := json.Unmarshal(body, &audit); code != 200 || err != nil || len(audit.Items) == 0 {
		t.Fatalf("audit: %d %v %s", code, err, body)
	}
	ann := audit.Items[len(audit.Items)-1].Annotations
	if v := ann["pod-security.kubernetes.io/audit-violations"]; !strings.HasPrefix(v, `would violate PodSecurity "baseline:latest": privileged`) {
		t.Fatalf("audit annotations: %v\n%s", ann, body)
	}

	// Workloads: warned about, not refused (the pods they make would be).
	dep := `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: locked}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {hostNetwork: true, containers: [{name: web, image: busybox}]}
`
	out, err = s.Kubectl(t, dep, "apply", "-f", "-")
	if err != nil || !strings.Contains(out, `Warning: would violate PodSecurity "restricted:latest": host namespaces (hostNetwork=true)`) {
		t.Fatalf("deployment in a restricted namespace: %v\n%s", err, out)
	}
	if _, err := cs.AppsV1().Deployments("locked").Get(t.Context(), "web", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	var _ *appsv1.Deployment

	// An exempt namespace is not checked.
	if out, err := s.Kubectl(t, "", "run", "priv", "--image=busybox", "--privileged", "-n", "exempt"); err != nil {
		t.Fatalf("privileged pod in an exempt namespace: %v\n%s", err, out)
	}
	// Invalid labels are refused (422 from Pod Security, as Kubernetes).
	if out, err := s.Kubectl(t, "", "label", "ns", "watched", "pod-security.kubernetes.io/enforce=strictest"); err == nil || !strings.Contains(out, "pod-security.kubernetes.io/enforce") {
		t.Fatalf("invalid level: %v\n%s", err, out)
	}
	// Enforcing restricted where a privileged pod runs warns about it.
	out, err = s.Kubectl(t, "", "label", "ns", "watched", "pod-security.kubernetes.io/enforce=restricted")
	if err != nil || !strings.Contains(out, `Warning: existing pods in namespace "watched" violate the new PodSecurity enforce level "restricted:latest"`) {
		t.Fatalf("enforcing restricted over a privileged pod: %v\n%s", err, out)
	}
}

// TestServiceAccountAdmission checks that pods get the projected token volume as Kubernetes
// gives it, unless the pod or its account says no, and that a pod naming an account that does
// not exist is refused.
func TestServiceAccountAdmission(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{Admission: &admission.Config{}})
	cs := kubernetes.NewForConfigOrDie(s.Config)
	ctx := t.Context()
	makeNamespace(t, cs, "app", nil)
	no := false
	if _, err := cs.CoreV1().ServiceAccounts("app").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "quiet"}, AutomountServiceAccountToken: &no,
		ImagePullSecrets: []corev1.LocalObjectReference{{Name: "regcred"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := func(name, sa string, automount *bool) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{ServiceAccountName: sa, AutomountServiceAccountToken: automount,
			InitContainers: []corev1.Container{{Name: "init", Image: "busybox"}},
			Containers:     []corev1.Container{{Name: "a", Image: "busybox"}, {Name: "b", Image: "busybox", VolumeMounts: []corev1.VolumeMount{{Name: "own", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"}}}},
			Volumes:        []corev1.Volume{{Name: "own", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}}}
	}
	p, err := cs.CoreV1().Pods("app").Create(ctx, pod("plain", "", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Spec.ServiceAccountName != "default" || len(p.Spec.Volumes) != 2 {
		t.Fatalf("pod: account %q, volumes %+v", p.Spec.ServiceAccountName, p.Spec.Volumes)
	}
	v := p.Spec.Volumes[1]
	if !strings.HasPrefix(v.Name, "kube-api-access-") || len(v.Name) != len("kube-api-access-")+5 || v.Projected == nil || *v.Projected.DefaultMode != 0o644 || len(v.Projected.Sources) != 3 {
		t.Fatalf("token volume: %+v", v)
	}
	src := v.Projected.Sources
	if src[0].ServiceAccountToken == nil || src[0].ServiceAccountToken.Path != "token" || *src[0].ServiceAccountToken.ExpirationSeconds != 3607 ||
		src[1].ConfigMap == nil || src[1].ConfigMap.Name != "kube-root-ca.crt" || src[1].ConfigMap.Items[0].Key != "ca.crt" ||
		src[2].DownwardAPI == nil || src[2].DownwardAPI.Items[0].FieldRef.FieldPath != "metadata.namespace" || src[2].DownwardAPI.Items[0].Path != "namespace" {
		t.Fatalf("token volume sources: %+v", src)
	}
	mounted := func(c corev1.Container) bool {
		for _, m := range c.VolumeMounts {
			if m.Name == v.Name && m.MountPath == "/var/run/secrets/kubernetes.io/serviceaccount" && m.ReadOnly {
				return true
			}
		}
		return false
	}
	if !mounted(p.Spec.InitContainers[0]) || !mounted(p.Spec.Containers[0]) || mounted(p.Spec.Containers[1]) {
		t.Fatalf("mounts: %+v %+v", p.Spec.InitContainers, p.Spec.Containers)
	}

	// The account says no: no volume, but its image pull secrets.
	p, err = cs.CoreV1().Pods("app").Create(ctx, pod("quiet", "quiet", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Spec.Volumes) != 1 || len(p.Spec.ImagePullSecrets) != 1 || p.Spec.ImagePullSecrets[0].Name != "regcred" {
		t.Fatalf("pod of an account that automounts nothing: %+v %+v", p.Spec.Volumes, p.Spec.ImagePullSecrets)
	}
	// The pod says no, over its account.
	if p, err = cs.CoreV1().Pods("app").Create(ctx, pod("self", "", &no), metav1.CreateOptions{}); err != nil || len(p.Spec.Volumes) != 1 {
		t.Fatalf("pod that automounts nothing: %v %+v", err, p)
	}
	yes := true
	if p, err = cs.CoreV1().Pods("app").Create(ctx, pod("wants", "quiet", &yes), metav1.CreateOptions{}); err != nil || len(p.Spec.Volumes) != 2 {
		t.Fatalf("pod that automounts over its account: %v %+v", err, p)
	}

	// An account that does not exist: 403, as Kubernetes.
	_, err = cs.CoreV1().Pods("app").Create(ctx, pod("lost", "ghost", nil), metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `error looking up service account app/ghost: serviceaccount "ghost" not found`) {
		t.Fatalf("pod of a missing account: %v", err)
	}
}
