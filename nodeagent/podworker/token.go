package podworker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"
)

// Tokens requests service account tokens, as the kubelet's token manager does through
// client-go's CoreV1().ServiceAccounts(namespace).CreateToken: the TokenRequest API of the API
// server, with the node's credentials.
type Tokens interface {
	CreateToken(ctx context.Context, namespace, serviceAccount string, tr *authenticationv1.TokenRequest) (*authenticationv1.TokenRequest, error)
}

// errNoTokens refuses serviceAccountToken projections on a node given no Tokens.
var errNoTokens = errors.New("serviceAccountToken projections need the TokenRequest API: this node agent has no API server to ask")

// The kubelet's token manager's limits.
const (
	tokenMaxTTL    = 24 * time.Hour
	tokenMaxJitter = 10 * time.Second
)

// tokenManager is the kubelet's token manager (pkg/kubelet/token): it caches the tokens of
// pods' projected volumes by what was asked for, and asks again when one is within 20% of its
// life of expiring (so at 80%, with up to 10 s of jitter) or is older than 24 hours; if asking
// fails, a cached token that has not expired is still used.
type tokenManager struct {
	tokens Tokens
	clock  clock.PassiveClock
	mu     sync.Mutex
	cache  map[string]*authenticationv1.TokenRequest
}

func newTokenManager(t Tokens, clk clock.PassiveClock) *tokenManager {
	return &tokenManager{tokens: t, clock: clk, cache: map[string]*authenticationv1.TokenRequest{}}
}

// token returns the token for tr (a request for pod's account bound to pod).
func (m *tokenManager) token(ctx context.Context, namespace, name string, tr *authenticationv1.TokenRequest) (*authenticationv1.TokenRequest, error) {
	key := tokenKey(namespace, name, tr)
	m.mu.Lock()
	cached, ok := m.cache[key]
	m.mu.Unlock()
	if ok && !m.requiresRefresh(cached) {
		return cached, nil
	}
	if m.tokens == nil {
		return nil, errNoTokens
	}
	got, err := m.tokens.CreateToken(ctx, namespace, name, tr)
	if err != nil {
		if ok && !m.expired(cached) {
			return cached, nil
		}
		return nil, fmt.Errorf("failed to fetch token: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, t := range m.cache {
		if m.expired(t) {
			delete(m.cache, k)
		}
	}
	m.cache[key] = got
	return got, nil
}

// forget drops the tokens bound to a pod (when its worker ends).
func (m *tokenManager) forget(uid string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, t := range m.cache {
		if ref := t.Spec.BoundObjectRef; ref != nil && string(ref.UID) == uid {
			delete(m.cache, k)
		}
	}
}

func (m *tokenManager) expired(t *authenticationv1.TokenRequest) bool {
	return m.clock.Now().After(t.Status.ExpirationTimestamp.Time)
}

// requiresRefresh is the kubelet's.
func (m *tokenManager) requiresRefresh(tr *authenticationv1.TokenRequest) bool {
	if tr.Spec.ExpirationSeconds == nil {
		return false
	}
	now := m.clock.Now()
	exp := tr.Status.ExpirationTimestamp.Time
	ttl := time.Duration(*tr.Spec.ExpirationSeconds) * time.Second
	iat := exp.Add(-ttl)
	jitter := time.Duration(rand.Float64()*tokenMaxJitter.Seconds()) * time.Second
	if now.After(iat.Add(tokenMaxTTL - jitter)) {
		return true
	}
	return now.After(exp.Add(-ttl*20/100 - jitter))
}

// tokenKey is the kubelet's keyFunc: what a cached token answers.
func tokenKey(namespace, name string, tr *authenticationv1.TokenRequest) string {
	var exp int64
	if tr.Spec.ExpirationSeconds != nil {
		exp = *tr.Spec.ExpirationSeconds
	}
	var ref authenticationv1.BoundObjectReference
	if tr.Spec.BoundObjectRef != nil {
		ref = *tr.Spec.BoundObjectRef
	}
	return fmt.Sprintf("%q/%q/%#v/%#v/%#v", name, namespace, tr.Spec.Audiences, exp, ref)
}

// tokenRequest is what the kubelet asks for a projection: the projection's audience (none: the
// API server's) and expiry, bound to the pod.
func tokenRequest(pod *corev1.Pod, tp *corev1.ServiceAccountTokenProjection) *authenticationv1.TokenRequest {
	var auds []string
	if tp.Audience != "" {
		auds = []string{tp.Audience}
	}
	return &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		Audiences:         auds,
		ExpirationSeconds: tp.ExpirationSeconds,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID},
	}}
}
