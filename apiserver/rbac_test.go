package apiserver_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/component-helpers/auth/rbac/validation"

	"github.com/logplane/logplane/apiserver/apiservertest"
	"github.com/logplane/logplane/apiserver/logplaneapi"
)

const rbacTokens = "alice-token,alice,1001,\"devs\"\n" +
	"robot-token,system:serviceaccount:team:robot,1002,\"system:serviceaccounts,system:serviceaccounts:team\"\n"

// tokenKubeconfig writes a kubeconfig for s that authenticates with a bearer token only.
func tokenKubeconfig(t *testing.T, s *apiservertest.Server, token string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(s.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, ai := range cfg.AuthInfos {
		ai.ClientCertificate, ai.ClientCertificateData, ai.ClientKey, ai.ClientKeyData = "", nil, "", nil
		ai.Token = token
	}
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, p); err != nil {
		t.Fatal(err)
	}
	return p
}

func tokenConfig(s *apiservertest.Server, token string) *rest.Config {
	c := rest.AnonymousClientConfig(s.Config)
	c.BearerToken = token
	return c
}

const teamPolicy = `apiVersion: v1
kind: Namespace
metadata:
  name: team
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: pod-reader
  namespace: team
rules:
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles"]
  verbs: ["create"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: read-pods
  namespace: team
subjects:
- kind: User
  name: alice
- kind: ServiceAccount
  name: robot
roleRef:
  kind: Role
  name: pod-reader
  apiGroup: rbac.authorization.k8s.io
`

// TestRBAC: a token user and a service account with one Role get what it grants and 403 with
// Kubernetes' message everywhere else (kubectl and client-go); kubectl auth can-i (with --list
// and --as) and whoami answer; impersonation needs the right to impersonate; escalation is
// refused; history needs the right to read the object; denials are in the audit trail.
func TestRBAC(t *testing.T) {
	needKubectl(t)
	s := apiservertest.Start(t, apiservertest.Options{Tokens: rbacTokens})
	must(t, s, teamPolicy, nil, "apply", "-f", "-")
	must(t, s, nginxPod, nil, "apply", "-n", "team", "-f", "-")
	alice := tokenKubeconfig(t, s, "alice-token")
	as := func(args ...string) []string { return append([]string{"--kubeconfig", alice}, args...) }

	must(t, s, "", []string{"nginx"}, as("get", "pods", "-n", "team")...)
	must(t, s, "", []string{"NAME", "ROLE", "USERS", "GROUPS", "SERVICEACCOUNTS", "read-pods", "Role/pod-reader", "alice", "/robot"}, // as Kubernetes prints a subject without a namespace
		"get", "rolebindings", "-n", "team", "-o", "wide")
	must(t, s, "", []string{"cluster-admin", "ClusterRole/cluster-admin", "system:masters"}, "get", "clusterrolebinding", "cluster-admin", "-o", "wide")
	must(t, s, "", []string{"PolicyRule:", "pods", "[get list watch]"}, "describe", "role", "pod-reader", "-n", "team")
	fails(t, s, "", []string{`Error from server (Forbidden): pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default"`},
		as("get", "pods", "-n", "default")...)
	fails(t, s, "", []string{`secrets is forbidden: User "alice" cannot list resource "secrets" in API group "" in the namespace "kube-system"`},
		as("get", "secrets", "-n", "kube-system")...)
	fails(t, s, "", []string{`namespaces "team" is forbidden: User "alice" cannot delete resource "namespaces" in API group "" in the namespace "team"`},
		as("delete", "namespace", "team")...)
	fails(t, s, "", []string{`pods "nginx" is forbidden: User "alice" cannot delete resource "pods" in API group "" in the namespace "team"`},
		as("delete", "pod", "nginx", "-n", "team")...)

	// kubectl auth can-i and whoami.
	must(t, s, "", []string{"yes"}, as("auth", "can-i", "list", "pods", "-n", "team")...)
	if out, err := kubectl(t, s, "", as("auth", "can-i", "create", "pods", "-n", "team")...); err == nil || strings.TrimSpace(out) != "no" {
		t.Fatalf("can-i create pods: %v %q", err, out)
	}
	must(t, s, "", []string{"pods", "[get list watch]", "selfsubjectaccessreviews.authorization.k8s.io", "[create]"},
		as("auth", "can-i", "--list", "-n", "team")...)
	must(t, s, "", []string{"yes"}, "auth", "can-i", "list", "pods", "-n", "team", "--as", "alice")
	must(t, s, "", []string{"yes"}, as("auth", "can-i", "create", "selfsubjectaccessreviews.authorization.k8s.io")...)
	must(t, s, "", []string{"localsubjectaccessreviews", "selfsubjectrulesreviews", "subjectaccessreviews"}, "api-resources", "--api-group=authorization.k8s.io")
	if out, err := kubectl(t, s, "", "auth", "can-i", "list", "pods", "-n", "default", "--as", "alice"); err == nil || strings.TrimSpace(out) != "no" {
		t.Fatalf("can-i --as alice list pods in default: %v %q", err, out)
	}
	must(t, s, "", []string{"yes"}, "auth", "can-i", "list", "pods", "-n", "team", "--as", "system:serviceaccount:team:robot")
	must(t, s, "", []string{"alice", "devs", "system:authenticated"}, as("auth", "whoami")...)
	must(t, s, "", []string{"bob"}, "auth", "whoami", "--as", "bob")
	fails(t, s, "", []string{"you do not have permission"}, as("auth", "whoami", "--as", "bob")...)
	if code, body := raw(t, tokenConfig(s, "alice-token"), "GET", "/api/v1/namespaces/team/pods", map[string]string{"Impersonate-User": "bob"}, ""); code != http.StatusForbidden ||
		!strings.Contains(string(body), `users \"bob\" is forbidden: User \"alice\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope`) {
		t.Fatalf("alice impersonates bob: %d %s", code, body)
	}

	// Escalation: alice may create roles in team, but only with rights she holds.
	fails(t, s, `apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: secret-reader, namespace: team}
rules:
- {apiGroups: [""], resources: ["secrets"], verbs: ["get"]}
`, []string{`roles.rbac.authorization.k8s.io "secret-reader" is forbidden: user "alice" (groups=["devs" "system:authenticated"]) is attempting to grant RBAC permissions not currently held:`,
		`{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}`}, as("create", "-f", "-")...)
	must(t, s, `apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-getter, namespace: team}
rules:
- {apiGroups: [""], resources: ["pods"], verbs: ["get"]}
`, []string{"pod-getter created"}, as("create", "-f", "-")...)
	// Unknown verbs and malformed rules are 422.
	fails(t, s, `apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: typo, namespace: team}
rules:
- {apiGroups: [""], resources: ["pods"], verbs: ["lsit"]}
- {resources: ["pods"], verbs: ["get"]}
`, []string{`The Role "typo" is invalid`, `rules[0].verbs[0]: Unsupported value: "lsit"`, "rules[1].apiGroups: Required value"}, "create", "-f", "-")

	// A service account's token: its Role's rights and no more (client-go).
	robot := kubernetes.NewForConfigOrDie(tokenConfig(s, "robot-token"))
	if _, err := robot.CoreV1().Pods("team").List(t.Context(), metav1.ListOptions{}); err != nil {
		t.Fatalf("robot lists pods in team: %v", err)
	}
	_, err := robot.CoreV1().Pods("team").Create(t.Context(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `User "system:serviceaccount:team:robot" cannot create resource "pods"`) {
		t.Fatalf("robot creates a pod: %v", err)
	}
	if _, err := robot.CoreV1().Secrets("kube-system").List(t.Context(), metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("robot lists kube-system secrets: %v", err)
	}
	if _, err := robot.CoreV1().Namespaces().List(t.Context(), metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("robot lists namespaces: %v", err)
	}

	// logplane's endpoints: the history of a Secret needs the right to get it.
	must(t, s, "", nil, "create", "secret", "generic", "s1", "-n", "team", "--from-literal=k=v")
	code, body := raw(t, tokenConfig(s, "alice-token"), "GET", logplaneapi.HistoryPath("/api/v1/namespaces/team/secrets/s1"), nil, "")
	if code != http.StatusForbidden || !strings.Contains(string(body), `User \"alice\" cannot get resource \"secrets\" in API group \"\" in the namespace \"team\"`) {
		t.Fatalf("alice reads a secret's history: %d %s", code, body)
	}
	if code, body := raw(t, tokenConfig(s, "alice-token"), "GET", logplaneapi.HistoryPath("/api/v1/namespaces/team/pods/nginx"), nil, ""); code != http.StatusOK {
		t.Fatalf("alice reads a pod's history: %d %s", code, body)
	}
	// The audit trail shows the denials to the admin, and alice only what she may read.
	code, body = raw(t, s.Config, "GET", logplaneapi.Prefix+"/audit?actor=alice", nil, "")
	var audit logplaneapi.Audit
	if err := json.Unmarshal(body, &audit); code != http.StatusOK || err != nil {
		t.Fatalf("audit: %d %v %s", code, err, body)
	}
	denied := map[string]bool{}
	for _, e := range audit.Items {
		if e.Denied {
			denied[e.Verb+" "+e.Resource+" "+e.Namespace] = true
		}
	}
	for _, want := range []string{"list pods default", "list secrets kube-system", "delete namespaces team", "get secrets team", "impersonate users "} {
		if !denied[want] {
			t.Errorf("the audit lacks the denial %q: %v", want, denied)
		}
	}
	code, body = raw(t, tokenConfig(s, "alice-token"), "GET", logplaneapi.Prefix+"/audit", nil, "")
	if err := json.Unmarshal(body, &audit); code != http.StatusOK || err != nil {
		t.Fatalf("alice's audit: %d %v %s", code, err, body)
	}
	for _, e := range audit.Items {
		if e.Resource != "pods" && !(e.Resource == "roles" && e.Denied) {
			t.Errorf("alice sees an audit entry of %s %s/%s", e.Resource, e.Namespace, e.Name)
		}
	}
}

// bindClusterAdmin makes user a cluster admin, for tests of other things than authorization.
func bindClusterAdmin(t *testing.T, s *apiservertest.Server, user string) {
	t.Helper()
	_, err := kubernetes.NewForConfigOrDie(s.Config).RbacV1().ClusterRoleBindings().Create(t.Context(), &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: user + "-admin"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.API.Store().WaitDelivered(t.Context(), s.API.Store().Applied()); err != nil {
		t.Fatal(err)
	}
}

// TestSeedBearerTokenWalkthrough: the seed's "access the API with a bearer token" steps
// (GET the server's root, /version, /apis/apps) with the default service account's token,
// which RBAC limits to reading in default: discovery and /version answer, reads in default
// work, and the rest is Kubernetes' 403 (the root path is not in system:discovery, on
// Kubernetes either).
func TestSeedBearerTokenWalkthrough(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{Tokens: "sa-token,system:serviceaccount:default:default,1003,\"system:serviceaccounts,system:serviceaccounts:default\"\n"})
	admin := kubernetes.NewForConfigOrDie(s.Config)
	if _, err := admin.RbacV1().RoleBindings("default").Create(t.Context(), &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "default-view"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:aggregate-to-view"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "default"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.API.Store().WaitDelivered(t.Context(), s.API.Store().Applied()); err != nil {
		t.Fatal(err)
	}
	sa := rest.AnonymousClientConfig(s.Config)
	bearer := map[string]string{"Authorization": "Bearer sa-token"}
	for _, tc := range []struct {
		method, path string
		code         int
		want         string
	}{
		{"GET", "/version", http.StatusOK, `"gitVersion"`},
		{"GET", "/apis/apps", http.StatusOK, `"preferredVersion":{"groupVersion":"apps/v1","version":"v1"}`},
		{"GET", "/api", http.StatusOK, `"versions":["v1"]`},
		{"GET", "/api/v1/namespaces/default/pods", http.StatusOK, `"kind":"PodList"`},
		{"GET", "/apis/apps/v1/namespaces/default/deployments", http.StatusOK, `"kind":"DeploymentList"`},
		{"GET", "/", http.StatusForbidden, `forbidden: User \"system:serviceaccount:default:default\" cannot get path \"/\"`},
		{"GET", "/api/v1/namespaces/default/secrets", http.StatusForbidden, `secrets is forbidden: User \"system:serviceaccount:default:default\" cannot list resource \"secrets\" in API group \"\" in the namespace \"default\"`},
		{"GET", "/api/v1/namespaces/kube-system/pods", http.StatusForbidden, `cannot list resource \"pods\" in API group \"\" in the namespace \"kube-system\"`},
		{"POST", "/apis/apps/v1/namespaces/default/deployments", http.StatusForbidden, `cannot create resource \"deployments\" in API group \"apps\" in the namespace \"default\"`},
	} {
		code, body := raw(t, sa, tc.method, tc.path, bearer, `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x"}}`)
		if code != tc.code || !strings.Contains(string(body), tc.want) {
			t.Errorf("%s %s with the token: %d %s, want %d with %s", tc.method, tc.path, code, body, tc.code, tc.want)
		}
	}
}

// TestDefaultPolicyReconciled: at start, a default role annotated for auto-update gets back
// the rules it lost and keeps the ones an administrator added; one annotated autoupdate=false
// is left as the administrator made it; a deleted default binding is made again.
func TestDefaultPolicyReconciled(t *testing.T) {
	dir := t.TempDir()
	s := apiservertest.Start(t, apiservertest.Options{DataDir: dir})
	cs := kubernetes.NewForConfigOrDie(s.Config)
	ctx := t.Context()
	extra := rbacv1.PolicyRule{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"configmaps"}}
	basic, err := cs.RbacV1().ClusterRoles().Get(ctx, "system:basic-user", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defaults := basic.Rules
	basic.Rules = append(basic.Rules[1:], extra)
	if _, err := cs.RbacV1().ClusterRoles().Update(ctx, basic, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	pinned, err := cs.RbacV1().ClusterRoles().Get(ctx, "system:public-info-viewer", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pinned.Annotations[rbacv1.AutoUpdateAnnotationKey] = "false"
	pinned.Rules = []rbacv1.PolicyRule{{Verbs: []string{"get"}, NonResourceURLs: []string{"/healthz"}}}
	if _, err := cs.RbacV1().ClusterRoles().Update(ctx, pinned, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cs.RbacV1().ClusterRoleBindings().Delete(ctx, "system:discovery", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	s.Stop()

	s2 := apiservertest.Start(t, apiservertest.Options{DataDir: dir, Addr: s.Addr})
	cs2 := kubernetes.NewForConfigOrDie(s2.Config)
	basic, err = cs2.RbacV1().ClusterRoles().Get(ctx, "system:basic-user", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// As Kubernetes' reconciliation: the missing rules appended (one per resource), the extra kept.
	if covers, missing := validation.Covers(basic.Rules, append(defaults, extra)); !covers {
		t.Errorf("system:basic-user's rules after a restart lack %v: %v", missing, basic.Rules)
	}
	pinned, err = cs2.RbacV1().ClusterRoles().Get(ctx, "system:public-info-viewer", metav1.GetOptions{})
	if err != nil || len(pinned.Rules) != 1 || len(pinned.Rules[0].NonResourceURLs) != 1 {
		t.Errorf("system:public-info-viewer (autoupdate=false) after a restart: %v %v", err, pinned.Rules)
	}
	if _, err := cs2.RbacV1().ClusterRoleBindings().Get(ctx, "system:discovery", metav1.GetOptions{}); err != nil {
		t.Errorf("the deleted default binding system:discovery: %v", err)
	}
}

// Denials are recorded in the log's denial record: the audit of a restarted server still shows
// a refusal made before the restart, once, beside what the log holds.
func TestDenialsOutliveTheServer(t *testing.T) {
	dir := t.TempDir()
	s1 := apiservertest.Start(t, apiservertest.Options{DataDir: dir, Tokens: rbacTokens})
	alice := kubernetes.NewForConfigOrDie(tokenConfig(s1, "alice-token"))
	if _, err := alice.CoreV1().Secrets("kube-system").List(t.Context(), metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("alice lists kube-system secrets: %v", err)
	}
	deniedOnce := func(s *apiservertest.Server) (bool, string) {
		code, body := raw(t, s.Config, "GET", logplaneapi.Prefix+"/audit?actor=alice", nil, "")
		var audit logplaneapi.Audit
		if err := json.Unmarshal(body, &audit); code != http.StatusOK || err != nil {
			t.Fatalf("audit: %d %v %s", code, err, body)
		}
		n := 0
		for _, e := range audit.Items {
			if e.Denied && e.Verb == "list" && e.Resource == "secrets" && e.Namespace == "kube-system" &&
				strings.Contains(e.Message, `User "alice" cannot list resource "secrets"`) {
				n++
			}
		}
		return n == 1, fmt.Sprintf("%d denials of alice's list in %s", n, body)
	}
	if ok, msg := deniedOnce(s1); !ok {
		t.Fatal(msg) // this server's own, at once
	}
	s1.Stop()
	s2 := apiservertest.Start(t, apiservertest.Options{DataDir: dir, Tokens: rbacTokens})
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, msg := deniedOnce(s2)
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a restart: %s", msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
