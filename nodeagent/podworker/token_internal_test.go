package podworker

import (
	"context"
	"errors"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
)

// countingTokens issues numbered tokens valid for what is asked, on clk.
type countingTokens struct {
	clk  *clocktesting.FakeClock
	n    int
	fail bool
}

func (c *countingTokens) CreateToken(_ context.Context, _, _ string, tr *authenticationv1.TokenRequest) (*authenticationv1.TokenRequest, error) {
	if c.fail {
		return nil, errors.New("API server unreachable")
	}
	c.n++
	out := tr.DeepCopy()
	out.Status.Token = string(rune('a' + c.n))
	out.Status.ExpirationTimestamp = metav1.NewTime(c.clk.Now().Add(time.Duration(*tr.Spec.ExpirationSeconds) * time.Second))
	return out, nil
}

// TestTokenRefreshAt80Percent checks the kubelet's token manager rules: a cached token is used
// until 80% of its life (less up to 10 s of jitter), then asked for again; when asking fails, a
// token that has not expired is still used, an expired one is not.
func TestTokenRefreshAt80Percent(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	api := &countingTokens{clk: clk}
	m := newTokenManager(api, clk)
	exp := int64(3607)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u1"}, Spec: corev1.PodSpec{ServiceAccountName: "default"}}
	get := func() string {
		t.Helper()
		tr, err := m.token(t.Context(), "ns", "default", tokenRequest(pod, &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: &exp}))
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	first := get()
	clk.Step(time.Duration(exp) * time.Second * 79 / 100)
	if got := get(); got != first || api.n != 1 {
		t.Fatalf("at 79%%: token %q after %d requests, want the cached %q", got, api.n, first)
	}
	clk.Step(time.Duration(exp) * time.Second * 2 / 100)
	second := get()
	if second == first || api.n != 2 {
		t.Fatalf("at 81%%: token %q after %d requests, want a new one", second, api.n)
	}
	api.fail = true
	clk.Step(time.Duration(exp) * time.Second * 90 / 100)
	if got := get(); got != second {
		t.Fatalf("API down, token not expired: %q, want the cached %q", got, second)
	}
	clk.Step(time.Duration(exp) * time.Second * 20 / 100)
	if _, err := m.token(t.Context(), "ns", "default", tokenRequest(pod, &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: &exp})); err == nil {
		t.Fatal("API down, token expired: no error")
	}
	m.forget("u1")
	if len(m.cache) != 0 {
		t.Fatalf("tokens of a pod that is gone are kept: %d", len(m.cache))
	}
}
