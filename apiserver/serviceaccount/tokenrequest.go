package serviceaccount

import (
	"context"
	"fmt"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/utils/clock"
)

// Requests answers TokenRequests, the serviceaccounts/token subresource (Kubernetes' TokenREST,
// with the NodeRestriction admission's rule for nodes).
type Requests struct {
	signer    *Signer
	getter    Getter
	audiences []string
	maxExp    int64
	extend    bool
	clock     clock.PassiveClock
}

// RequestsConfig configures Requests.
type RequestsConfig struct {
	Signer *Signer
	Getter Getter
	// Audiences are the API server's, given to tokens whose request names none. Required.
	Audiences []string
	// MaxExpirationSeconds shortens longer requests (kube-apiserver's
	// --service-account-max-token-expiration). 0: no limit.
	MaxExpirationSeconds int64
	// NoExtendExpiration turns off what kube-apiserver's --service-account-extend-token-expiration
	// (on by default) does: a pod-bound token for the API server asked for
	// WarnOnlyBoundTokenExpirationSeconds is valid for ExpirationExtensionSeconds, with a warnafter.
	NoExtendExpiration bool
	// Clock. Default: the real clock.
	Clock clock.PassiveClock
}

// NewRequests returns Requests.
func NewRequests(cfg RequestsConfig) *Requests {
	r := &Requests{signer: cfg.Signer, getter: cfg.Getter, audiences: cfg.Audiences, maxExp: cfg.MaxExpirationSeconds, extend: !cfg.NoExtendExpiration, clock: cfg.Clock}
	if r.clock == nil {
		r.clock = clock.RealClock{}
	}
	return r
}

var tokenRequestGK = schema.GroupKind{Group: authenticationv1.GroupName, Kind: "TokenRequest"}

// Create issues the token that req asks for the service account namespace/name, on behalf of
// requester, and returns req with its status (the token and its expiry) and warnings for the
// client. Errors are apimachinery StatusErrors: 404 if the service account or the bound object
// does not exist, 422 for an invalid request, 400 for a pod of another service account or an
// object that tokens cannot be bound to, 409 for a stale uid, 403 for a node asking for a token
// not bound to one of its pods.
func (r *Requests) Create(_ context.Context, namespace, name string, req *authenticationv1.TokenRequest, requester user.Info) (*authenticationv1.TokenRequest, []string, error) {
	var warnings []string
	if req.Name != "" && req.Name != name {
		return nil, nil, apierrors.NewInvalid(tokenRequestGK, name, field.ErrorList{field.Invalid(field.NewPath("metadata").Child("name"), req.Name, "must match the service account name if specified")})
	}
	if req.Namespace != "" && req.Namespace != namespace {
		return nil, nil, apierrors.NewInvalid(tokenRequestGK, name, field.ErrorList{field.Invalid(field.NewPath("metadata").Child("namespace"), req.Namespace, "must match the service account namespace if specified")})
	}
	sa, err := r.getter.ServiceAccount(namespace, name)
	if err != nil {
		return nil, nil, err
	}
	if req.UID != "" && req.UID != sa.UID {
		return nil, nil, apierrors.NewConflict(schema.GroupResource{Group: tokenRequestGK.Group, Resource: tokenRequestGK.Kind}, name,
			fmt.Errorf("the UID in the token request (%s) does not match the UID of the service account (%s)", req.UID, sa.UID))
	}
	if req.Spec.ExpirationSeconds == nil { // SetDefaults_TokenRequestSpec
		one := int64(60 * 60)
		req.Spec.ExpirationSeconds = &one
	}
	if len(req.Spec.Audiences) == 0 {
		req.Spec.Audiences = append([]string(nil), r.audiences...)
	}
	req.Name, req.Namespace, req.UID = sa.Name, sa.Namespace, sa.UID
	now := r.clock.Now()
	req.CreationTimestamp = metav1.NewTime(now)
	req.Status = authenticationv1.TokenRequestStatus{}
	if errs := validateTokenRequest(req); len(errs) > 0 {
		return nil, nil, apierrors.NewInvalid(tokenRequestGK, "", errs)
	}
	node, isNode := nodeOf(requester)
	var (
		pod     *corev1.Pod
		podNode *corev1.Node
		secret  *corev1.Secret
		bound   *corev1.Node
	)
	if isNode {
		if err := r.nodeMayRequest(namespace, name, node, req); err != nil {
			return nil, nil, err
		}
	}
	if ref := req.Spec.BoundObjectRef; ref != nil {
		var uid types.UID
		gvk := schema.FromAPIVersionAndKind(ref.APIVersion, ref.Kind)
		switch {
		case gvk.Group == "" && gvk.Kind == "Pod":
			if pod, err = r.getter.Pod(namespace, ref.Name); err != nil {
				return nil, nil, err
			}
			if name != pod.Spec.ServiceAccountName {
				return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("cannot bind token for serviceaccount %q to pod running with different serviceaccount name.", name))
			}
			uid = pod.UID
			if nn := pod.Spec.NodeName; nn != "" {
				podNode, err = r.getter.Node(nn)
				switch {
				case apierrors.IsNotFound(err):
					podNode = &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nn}}
				case err != nil:
					return nil, nil, apierrors.NewInternalError(err)
				}
			}
		case gvk.Group == "" && gvk.Kind == "Node":
			if bound, err = r.getter.Node(ref.Name); err != nil {
				return nil, nil, err
			}
			uid = bound.UID
		case gvk.Group == "" && gvk.Kind == "Secret":
			if secret, err = r.getter.Secret(namespace, ref.Name); err != nil {
				return nil, nil, err
			}
			uid = secret.UID
		default:
			return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("cannot bind token to object of type %s", gvk.String()))
		}
		if ref.UID != "" && uid != ref.UID {
			return nil, nil, apierrors.NewConflict(schema.GroupResource{Group: gvk.Group, Resource: gvk.Kind}, ref.Name,
				fmt.Errorf("the UID in the bound object reference (%s) does not match the UID in record. The object might have been deleted and then recreated", ref.UID))
		}
	}
	if r.maxExp > 0 && *req.Spec.ExpirationSeconds > r.maxExp {
		warnings = append(warnings, fmt.Sprintf("requested expiration of %d seconds shortened to %d seconds", *req.Spec.ExpirationSeconds, r.maxExp))
		*req.Spec.ExpirationSeconds = r.maxExp
	}
	exp, warnAfter := *req.Spec.ExpirationSeconds, int64(0)
	if r.extend && pod != nil && exp == WarnOnlyBoundTokenExpirationSeconds && sets.New(r.audiences...).HasAll(req.Spec.Audiences...) {
		warnAfter, exp = exp, ExpirationExtensionSeconds
	}
	nodeClaim := podNode
	if pod == nil {
		nodeClaim = bound
	}
	public, private, err := claims(now, sa, pod, secret, nodeClaim, exp, warnAfter, req.Spec.Audiences)
	if err != nil {
		return nil, nil, apierrors.NewInternalError(err)
	}
	tok, err := r.signer.sign(public, private)
	if err != nil {
		return nil, nil, apierrors.NewInternalError(fmt.Errorf("failed to generate token: %w", err))
	}
	out := req.DeepCopy()
	out.Status = authenticationv1.TokenRequestStatus{
		Token:               tok,
		ExpirationTimestamp: metav1.NewTime(now.Add(time.Duration(*out.Spec.ExpirationSeconds) * time.Second)),
	}
	return out, warnings, nil
}

// validateTokenRequest is Kubernetes' ValidateTokenRequest.
func validateTokenRequest(tr *authenticationv1.TokenRequest) field.ErrorList {
	var errs field.ErrorList
	p := field.NewPath("spec", "expirationSeconds")
	const minSeconds = int64(10 * 60)
	if *tr.Spec.ExpirationSeconds < minSeconds {
		errs = append(errs, field.Invalid(p, *tr.Spec.ExpirationSeconds, "may not specify a duration less than 10 minutes"))
	}
	if *tr.Spec.ExpirationSeconds > 1<<32 {
		errs = append(errs, field.Invalid(p, *tr.Spec.ExpirationSeconds, "may not specify a duration larger than 2^32 seconds"))
	}
	return errs
}

// nodeOf tells whether u is a node (system:node:<name> in system:nodes), and which.
func nodeOf(u user.Info) (string, bool) {
	if u == nil {
		return "", false
	}
	name, ok := strings.CutPrefix(u.GetName(), "system:node:")
	if !ok || name == "" {
		return "", false
	}
	for _, g := range u.GetGroups() {
		if g == user.NodesGroup {
			return name, true
		}
	}
	return "", false
}

// nodeMayRequest is the NodeRestriction admission's rule for token requests: a node may only ask
// for tokens bound to a pod that runs on it.
func (r *Requests) nodeMayRequest(namespace, name, node string, req *authenticationv1.TokenRequest) error {
	forbid := func(format string, args ...any) error {
		return apierrors.NewForbidden(schema.GroupResource{Resource: "serviceaccounts"}, name, fmt.Errorf(format, args...))
	}
	ref := req.Spec.BoundObjectRef
	if ref == nil {
		return forbid("node requested token not bound to a pod")
	}
	if ref.Kind != "Pod" {
		return forbid("node requested token bound to a %s", ref.Kind)
	}
	pod, err := r.getter.Pod(namespace, ref.Name)
	if err != nil {
		return err
	}
	if ref.UID != pod.UID {
		return forbid("the UID in the bound object reference (%s) does not match the UID in record. The object might have been deleted and then recreated", ref.UID)
	}
	if pod.Spec.NodeName != node {
		return forbid("node requested token bound to a pod scheduled on a different node")
	}
	return nil
}
