package nodeagent_test

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/logplane/logplane/admission"
	"github.com/logplane/logplane/apiserver/apiservertest"
	"github.com/logplane/logplane/apiserver/pki"
	"github.com/logplane/logplane/nodeagent"
	"github.com/logplane/logplane/nodeagent/podworker"
)

// nodeClient is a TokenRequest client that authenticates as node (a client certificate of the
// cluster CA), as the daemon's agents do.
type nodeClient struct{ cs kubernetes.Interface }

func (n nodeClient) CreateToken(ctx context.Context, ns, name string, tr *authenticationv1.TokenRequest) (*authenticationv1.TokenRequest, error) {
	return n.cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, tr, metav1.CreateOptions{})
}

// TestSimPodServiceAccountToken runs a pod on a simulated node of a cluster with admission and
// service account tokens: the pod gets the kube-api-access volume, the agent asks the
// TokenRequest API for a token bound to the pod (as the node), and the token file it writes,
// with ca.crt and namespace, authenticates to the API server as the pod's service account.
func TestSimPodServiceAccountToken(t *testing.T) {
	c := newCluster(t, apiservertest.Options{Admission: &admission.Config{}, ServiceAccountTokens: true})
	ctx := t.Context()
	mat, err := pki.Load(filepath.Join(c.api.DataDir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	// What the serviceaccount and root CA reconcilers would have made.
	if _, err := c.client.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kube-root-ca.crt"},
		Data: map[string]string{"ca.crt": string(mat.CA.CertPEM)}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	volumes := t.TempDir()
	startFleet(t, c, 1, func(cfg *nodeagent.FleetConfig) {
		cfg.VolumeDir = volumes
		cfg.Template.Tokens = func(node string) podworker.Tokens {
			cert, key, err := mat.CA.Issue("system:node:"+node, []string{"system:nodes"}, nil, x509.ExtKeyUsageClientAuth)
			if err != nil {
				t.Error(err)
				return nil
			}
			return nodeClient{kubernetes.NewForConfigOrDie(&rest.Config{Host: c.api.URL, TLSClientConfig: rest.TLSClientConfig{CAData: mat.CA.CertPEM, CertData: cert, KeyData: key}})}
		}
	})
	pod, err := c.client.CoreV1().Pods("default").Create(ctx, podOn("app", "sim-0", "example/app:1"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var vol string
	for _, v := range pod.Spec.Volumes {
		if strings.HasPrefix(v.Name, "kube-api-access-") {
			vol = v.Name
		}
	}
	if vol == "" {
		t.Fatalf("no token volume: %+v", pod.Spec.Volumes)
	}
	c.waitPod("default", "app", 20*time.Second, "Running", running)
	dir := filepath.Join(volumes, "sim-0", string(pod.UID), "volumes", "kubernetes.io~projected", vol)
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if read("namespace") != "default" || read("ca.crt") != string(mat.CA.CertPEM) {
		t.Fatalf("namespace %q, ca.crt %q", read("namespace"), read("ca.crt"))
	}
	cfg := rest.AnonymousClientConfig(c.api.Config)
	cfg.BearerToken = read("token")
	review, err := kubernetes.NewForConfigOrDie(cfg).AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("the mounted token: %v", err)
	}
	u := review.Status.UserInfo
	if u.Username != "system:serviceaccount:default:default" || u.Extra["authentication.kubernetes.io/pod-uid"][0] != string(pod.UID) ||
		u.Extra["authentication.kubernetes.io/node-name"][0] != "sim-0" {
		t.Fatalf("the mounted token's user: %+v", u)
	}
	// The node may not ask for tokens of pods that are not its own.
	other, err := c.client.CoreV1().Pods("default").Create(ctx, podOn("other", "sim-9", "example/app:1"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := mat.CA.Issue("system:node:sim-0", []string{"system:nodes"}, nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		t.Fatal(err)
	}
	node := kubernetes.NewForConfigOrDie(&rest.Config{Host: c.api.URL, TLSClientConfig: rest.TLSClientConfig{CAData: mat.CA.CertPEM, CertData: cert, KeyData: key}})
	_, err = node.CoreV1().ServiceAccounts("default").CreateToken(ctx, "default", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		BoundObjectRef: &authenticationv1.BoundObjectReference{APIVersion: "v1", Kind: "Pod", Name: "other", UID: other.UID}}}, metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "node requested token bound to a pod scheduled on a different node") {
		t.Fatalf("a token for another node's pod: %v", err)
	}
}
