package apiserver_test

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/logplane/logplane/apiserver"
	"github.com/logplane/logplane/apiserver/apiservertest"
	"github.com/logplane/logplane/apiserver/serviceaccount"
)

// TestServiceAccountTokens mints tokens with the real kubectl (create token), uses them with
// client-go, and checks what Kubernetes refuses with 401: a token that has expired, one for
// another audience, one altered or signed with another key, and one bound to a pod that was
// deleted; a token for a service account that does not exist is a 404, a duration under 10
// minutes a 422. The OIDC discovery documents verify the token, as a relying party would.
func TestServiceAccountTokens(t *testing.T) {
	apiservertest.NeedKubectl(t)
	clk := clocktesting.NewFakeClock(time.Now())
	s := apiservertest.Start(t, apiservertest.Options{ServiceAccountTokens: true, Configure: func(c *apiserver.Config) { c.Clock = clk }})
	cs := kubernetes.NewForConfigOrDie(s.Config)
	ctx := t.Context()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts("team").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "robot"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kubectl := func(args ...string) string {
		t.Helper()
		out, err := s.Kubectl(t, "", args...)
		if err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(out)
	}
	as := func(token string) *rest.Config {
		c := rest.AnonymousClientConfig(s.Config)
		c.BearerToken = token
		return c
	}
	whoami := func(token string) (authenticationv1.UserInfo, error) {
		r, err := kubernetes.NewForConfigOrDie(as(token)).AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
		if err != nil {
			return authenticationv1.UserInfo{}, err
		}
		return r.Status.UserInfo, nil
	}
	unauthorized := func(what, token string) {
		t.Helper()
		if _, err := whoami(token); !apierrors.IsUnauthorized(err) {
			t.Fatalf("%s: got %v, want 401", what, err)
		}
	}

	token := kubectl("create", "token", "robot", "-n", "team")
	u, err := whoami(token)
	if err != nil {
		t.Fatal(err)
	}
	if u.Username != "system:serviceaccount:team:robot" || !slices.Equal(u.Groups, []string{"system:serviceaccounts", "system:serviceaccounts:team", "system:authenticated"}) {
		t.Fatalf("token user: %+v", u)
	}
	if id := u.Extra["authentication.kubernetes.io/credential-id"]; len(id) != 1 || !strings.HasPrefix(id[0], "JTI=") {
		t.Fatalf("token user's credential id: %+v", u.Extra)
	}
	var claims struct {
		Iss string       `json:"iss"`
		Aud jwt.Audience `json:"aud"`
		Exp int64        `json:"exp"`
		Iat int64        `json:"iat"`
		K8s struct {
			Namespace      string            `json:"namespace"`
			ServiceAccount map[string]string `json:"serviceaccount"`
			Pod            map[string]string `json:"pod"`
		} `json:"kubernetes.io"`
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	if claims.Iss != serviceaccount.DefaultIssuer || !slices.Equal([]string(claims.Aud), []string{serviceaccount.DefaultIssuer}) || claims.Exp-claims.Iat != 3600 ||
		claims.K8s.Namespace != "team" || claims.K8s.ServiceAccount["name"] != "robot" || claims.K8s.ServiceAccount["uid"] == "" {
		t.Fatalf("claims: %s", payload)
	}

	// A service account that does not exist: 404, as kubectl shows it.
	if out, err := s.Kubectl(t, "", "create", "token", "nobody", "-n", "team"); err == nil || !strings.Contains(out, `serviceaccounts "nobody" not found`) {
		t.Fatalf("token of a missing service account: %v\n%s", err, out)
	}
	if _, err := cs.CoreV1().ServiceAccounts("team").CreateToken(ctx, "nobody", &authenticationv1.TokenRequest{}, metav1.CreateOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("client-go token of a missing service account: %v, want 404", err)
	}
	if out, err := s.Kubectl(t, "", "create", "token", "robot", "-n", "team", "--duration", "5m"); err == nil || !strings.Contains(out, "may not specify a duration less than 10 minutes") {
		t.Fatalf("token for 5 minutes: %v\n%s", err, out)
	}

	// Another audience: not for this API server.
	unauthorized("another audience", kubectl("create", "token", "robot", "-n", "team", "--audience", "vault"))
	// Altered: the payload says another account, the signature no longer matches.
	parts := strings.Split(token, ".")
	forged := strings.Replace(string(payload), `"name":"robot"`, `"name":"default"`, 1)
	unauthorized("altered", parts[0]+"."+base64.RawURLEncoding.EncodeToString([]byte(forged))+"."+parts[2])
	// Signed with another key by someone who knows the issuer.
	other, err := serviceaccount.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: other.Private}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var claimsMap map[string]any
	if err := json.Unmarshal(payload, &claimsMap); err != nil {
		t.Fatal(err)
	}
	foreign, err := jwt.Signed(signer).Claims(claimsMap).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	unauthorized("signed with another key", foreign)

	// Expired: a 10-minute token, 12 minutes later (a minute of leeway, as Kubernetes).
	short := kubectl("create", "token", "robot", "-n", "team", "--duration", "10m")
	if _, err := whoami(short); err != nil {
		t.Fatalf("fresh 10-minute token: %v", err)
	}
	clk.Step(12 * time.Minute)
	unauthorized("expired", short)
	if _, err := whoami(token); err != nil {
		t.Fatalf("the one-hour token, 12 minutes on: %v", err)
	}

	// Bound to a pod: valid while the pod exists, not after it is deleted.
	pod, err := cs.CoreV1().Pods("team").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "worker"}, Spec: corev1.PodSpec{
		ServiceAccountName: "robot", AutomountServiceAccountToken: new(bool), Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bound := kubectl("create", "token", "robot", "-n", "team", "--bound-object-kind", "Pod", "--bound-object-name", "worker")
	u, err = whoami(bound)
	if err != nil {
		t.Fatal(err)
	}
	if u.Extra["authentication.kubernetes.io/pod-name"][0] != "worker" || u.Extra["authentication.kubernetes.io/pod-uid"][0] != string(pod.UID) {
		t.Fatalf("pod-bound token user: %+v", u)
	}
	if out, err := s.Kubectl(t, "", "create", "token", "default", "-n", "team", "--bound-object-kind", "Pod", "--bound-object-name", "gone"); err == nil || !strings.Contains(out, "NotFound") && !strings.Contains(out, "not found") {
		t.Fatalf("token bound to a missing pod: %v\n%s", err, out)
	}
	if err := cs.CoreV1().Pods("team").Delete(ctx, "worker", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	unauthorized("bound to a deleted pod", bound)

	// The OIDC discovery documents, as a relying party reads them: the keys verify the token.
	code, body := raw(t, as(token), "GET", "/.well-known/openid-configuration", nil, "")
	var disc struct {
		Issuer  string   `json:"issuer"`
		JWKSURI string   `json:"jwks_uri"`
		Algs    []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := json.Unmarshal(body, &disc); code != 200 || err != nil || disc.Issuer != serviceaccount.DefaultIssuer || !strings.HasSuffix(disc.JWKSURI, "/openid/v1/jwks") || !slices.Equal(disc.Algs, []string{"RS256"}) {
		t.Fatalf("openid-configuration: %d %v %s", code, err, body)
	}
	code, body = raw(t, as(token), "GET", "/openid/v1/jwks", nil, "")
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); code != 200 || err != nil || len(set.Keys) != 1 || !set.Keys[0].IsPublic() {
		t.Fatalf("jwks: %d %v %s", code, err, body)
	}
	parsed, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	var sub jwt.Claims
	if err := parsed.Claims(set.Keys[0].Key, &sub); err != nil || sub.Subject != "system:serviceaccount:team:robot" {
		t.Fatalf("verifying with the published key: %v %+v", err, sub)
	}
}
