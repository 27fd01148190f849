package serviceaccount

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	apiserverserviceaccount "k8s.io/apiserver/pkg/authentication/serviceaccount"
	authenticationtokenjwt "k8s.io/apiserver/pkg/authentication/token/jwt"
)

// Getter reads the objects a token names. Errors for objects that do not exist are
// apimachinery NotFound errors.
type Getter interface {
	ServiceAccount(namespace, name string) (*corev1.ServiceAccount, error)
	Pod(namespace, name string) (*corev1.Pod, error)
	Secret(namespace, name string) (*corev1.Secret, error)
	Node(name string) (*corev1.Node, error)
}

// privateClaims are the claims under "kubernetes.io", as Kubernetes writes them.
type privateClaims struct {
	Kubernetes kubernetes `json:"kubernetes.io,omitempty"`
}

type kubernetes struct {
	Namespace string           `json:"namespace,omitempty"`
	Svcacct   ref              `json:"serviceaccount,omitempty"`
	Pod       *ref             `json:"pod,omitempty"`
	Secret    *ref             `json:"secret,omitempty"`
	Node      *ref             `json:"node,omitempty"`
	WarnAfter *jwt.NumericDate `json:"warnafter,omitempty"`
}

type ref struct {
	Name string `json:"name,omitempty"`
	UID  string `json:"uid,omitempty"`
}

// claims is Kubernetes' Claims: the public and private claims of a token for sa, bound to pod
// (and the pod's node), secret or node, valid for expirationSeconds from now, with a warnafter
// claim when warnafter is not 0. A token has a unique ID ("jti"), as with ServiceAccountTokenJTI.
func claims(now time.Time, sa *corev1.ServiceAccount, pod *corev1.Pod, secret *corev1.Secret, node *corev1.Node, expirationSeconds, warnafter int64, audience []string) (*jwt.Claims, *privateClaims, error) {
	sc := &jwt.Claims{
		Subject:   apiserverserviceaccount.MakeUsername(sa.Namespace, sa.Name),
		Audience:  jwt.Audience(audience),
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		Expiry:    jwt.NewNumericDate(now.Add(time.Duration(expirationSeconds) * time.Second)),
		ID:        string(uuid.NewUUID()),
	}
	pc := &privateClaims{Kubernetes: kubernetes{
		Namespace: sa.Namespace,
		Svcacct:   ref{Name: sa.Name, UID: string(sa.UID)},
	}}
	if secret != nil && (node != nil || pod != nil) {
		return nil, nil, errors.New("internal error, token can only be bound to one object type")
	}
	switch {
	case pod != nil:
		pc.Kubernetes.Pod = &ref{Name: pod.Name, UID: string(pod.UID)}
		if node != nil {
			pc.Kubernetes.Node = &ref{Name: node.Name, UID: string(node.UID)}
		}
	case secret != nil:
		pc.Kubernetes.Secret = &ref{Name: secret.Name, UID: string(secret.UID)}
	case node != nil:
		pc.Kubernetes.Node = &ref{Name: node.Name, UID: string(node.UID)}
	}
	if warnafter != 0 {
		pc.Kubernetes.WarnAfter = jwt.NewNumericDate(now.Add(time.Duration(warnafter) * time.Second))
	}
	return sc, pc, nil
}

// validate is Kubernetes' validator.Validate: the token's times against now, then the
// service account and the bound objects it names, which must still exist with the same uid and
// not have been deleted (more than the leeway ago).
func validate(_ context.Context, now time.Time, g Getter, public *jwt.Claims, private *privateClaims) (*apiserverserviceaccount.ServiceAccountInfo, error) {
	switch err := public.ValidateWithLeeway(jwt.Expected{Time: now}, leeway); {
	case err == nil:
	case errors.Is(err, jwt.ErrExpired):
		return nil, errors.New("service account token has expired")
	case errors.Is(err, jwt.ErrNotValidYet):
		return nil, errors.New("service account token is not valid yet")
	case errors.Is(err, jwt.ErrIssuedInTheFuture):
		return nil, errors.New("service account token is issued in the future")
	default:
		return nil, errors.New("service account token claims could not be validated due to unexpected validation error")
	}
	invalidIfDeletedBefore := now.Add(-leeway)
	namespace := private.Kubernetes.Namespace
	saref := private.Kubernetes.Svcacct
	sa, err := g.ServiceAccount(namespace, saref.Name)
	if err != nil {
		return nil, err
	}
	if string(sa.UID) != saref.UID {
		return nil, fmt.Errorf("service account UID (%s) does not match claim (%s)", sa.UID, saref.UID)
	}
	if sa.DeletionTimestamp != nil && sa.DeletionTimestamp.Time.Before(invalidIfDeletedBefore) {
		return nil, fmt.Errorf("service account %s/%s has been deleted", namespace, saref.Name)
	}
	if secref := private.Kubernetes.Secret; secref != nil {
		secret, err := g.Secret(namespace, secref.Name)
		if err != nil {
			return nil, errors.New("service account token has been invalidated")
		}
		if secref.UID != string(secret.UID) {
			return nil, fmt.Errorf("secret UID (%s) does not match service account secret ref claim (%s)", secret.UID, secref.UID)
		}
		if secret.DeletionTimestamp != nil && secret.DeletionTimestamp.Time.Before(invalidIfDeletedBefore) {
			return nil, errors.New("service account token has been invalidated")
		}
	}
	info := &apiserverserviceaccount.ServiceAccountInfo{Namespace: namespace, Name: saref.Name, UID: saref.UID}
	podref, noderef := private.Kubernetes.Pod, private.Kubernetes.Node
	if podref != nil {
		pod, err := g.Pod(namespace, podref.Name)
		if err != nil {
			return nil, errors.New("service account token has been invalidated")
		}
		if podref.UID != string(pod.UID) {
			return nil, fmt.Errorf("pod UID (%s) does not match service account pod ref claim (%s)", pod.UID, podref.UID)
		}
		if pod.DeletionTimestamp != nil && pod.DeletionTimestamp.Time.Before(invalidIfDeletedBefore) {
			return nil, errors.New("service account token has been invalidated")
		}
		info.PodName, info.PodUID = podref.Name, podref.UID
		if noderef != nil {
			info.NodeName, info.NodeUID = noderef.Name, noderef.UID
		}
	} else if noderef != nil {
		node, err := g.Node(noderef.Name)
		if err != nil {
			return nil, errors.New("service account token has been invalidated")
		}
		if noderef.UID != string(node.UID) {
			return nil, fmt.Errorf("node UID (%s) does not match service account node ref claim (%s)", node.UID, noderef.UID)
		}
		if node.DeletionTimestamp != nil && node.DeletionTimestamp.Time.Before(invalidIfDeletedBefore) {
			return nil, errors.New("service account token has been invalidated")
		}
		info.NodeName, info.NodeUID = noderef.Name, noderef.UID
	}
	info.CredentialID = authenticationtokenjwt.CredentialIDForJTI(public.ID)
	return info, nil
}
