package apiserver_test

import (
	"slices"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/logplane/logplane/apiserver/apiservertest"
)

// TestAuthenticators checks that requests are authenticated by k8s.io/apiserver's
// authenticators as kube-apiserver's are: the bearer scheme in any case, users in
// system:authenticated once, and a client certificate's user carrying the certificate's
// credential id.
func TestAuthenticators(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{Tokens: "s3cret,alice,1001,\"devs,ops\"\n"})
	bindClusterAdmin(t, s, "alice")
	whoami := func(cfg *rest.Config) authenticationv1.UserInfo {
		t.Helper()
		review, err := kubernetes.NewForConfigOrDie(cfg).AuthenticationV1().SelfSubjectReviews().Create(t.Context(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return review.Status.UserInfo
	}

	// The admin certificate: CN admin, O system:masters.
	u := whoami(s.Config)
	if u.Username != "admin" || !slices.Equal(u.Groups, []string{"system:masters", "system:authenticated"}) {
		t.Fatalf("certificate user: %+v", u)
	}
	if id := u.Extra["authentication.kubernetes.io/credential-id"]; len(id) != 1 || !strings.HasPrefix(id[0], "X509SHA256=") {
		t.Fatalf("certificate user's credential id: %+v", u.Extra)
	}

	token := rest.AnonymousClientConfig(s.Config)
	token.BearerToken = "s3cret"
	if u := whoami(token); u.Username != "alice" || u.UID != "1001" || !slices.Equal(u.Groups, []string{"devs", "ops", "system:authenticated"}) || len(u.Extra) != 0 {
		t.Fatalf("token user: %+v", u)
	}

	// The scheme's name is case-insensitive (RFC 7235), as kube-apiserver reads it.
	code, body := raw(t, rest.AnonymousClientConfig(s.Config), "GET", "/api/v1/namespaces/default", map[string]string{"Authorization": "bearer s3cret"}, "")
	if code != 200 {
		t.Fatalf("lower-case bearer: %d %s", code, body)
	}
}
