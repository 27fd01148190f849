package apiserver

import (
	"fmt"
	"net"
	"net/http"
	"strconv"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authentication/authenticator"

	"github.com/logplane/logplane/apiserver/serviceaccount"
	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/projections"
)

// serviceAccounts is what the server needs for service account tokens: the TokenRequest API,
// their authenticator and the OIDC discovery documents.
type serviceAccounts struct {
	requests *serviceaccount.Requests
	authn    *serviceaccount.Authenticator
	issuer   string
	keys     []*serviceaccount.Key
	// openid is rendered at start when the external address is known; else per request from
	// the address the client reached (the Host header).
	openid *serviceaccount.OpenIDMetadata
}

// newServiceAccounts sets up service account tokens signed with cfg.ServiceAccountKey; nil if
// there is none.
func newServiceAccounts(cfg Config, store *projections.Store) (*serviceAccounts, error) {
	if cfg.ServiceAccountKey == nil {
		return nil, nil
	}
	issuer := cfg.ServiceAccountIssuer
	if issuer == "" {
		issuer = serviceaccount.DefaultIssuer
	}
	audiences := []string{issuer}
	signer, err := serviceaccount.NewSigner(issuer, cfg.ServiceAccountKey)
	if err != nil {
		return nil, err
	}
	g := storeGetter{store: store}
	keys := []*serviceaccount.Key{cfg.ServiceAccountKey}
	authn, err := serviceaccount.NewAuthenticator(serviceaccount.AuthenticatorConfig{
		Issuers: []string{issuer}, Keys: keys, Audiences: audiences, Getter: g, Clock: cfg.Clock})
	if err != nil {
		return nil, err
	}
	sa := &serviceAccounts{
		requests: serviceaccount.NewRequests(serviceaccount.RequestsConfig{Signer: signer, Getter: g, Audiences: audiences, Clock: cfg.Clock}),
		authn:    authn, issuer: issuer, keys: keys,
	}
	if cfg.ExternalAddress != "" {
		if sa.openid, err = serviceaccount.NewOpenIDMetadata(issuer, "", cfg.ExternalAddress, keys); err != nil {
			return nil, err
		}
	}
	return sa, nil
}

// tokenAuthenticator is the service account token authenticator, or nil.
func (sa *serviceAccounts) tokenAuthenticator() authenticator.Token {
	if sa == nil {
		return nil
	}
	return sa.authn
}

// serveTokenRequest serves POST serviceaccounts/<name>/token (kubectl create token).
func (s *Server) serveTokenRequest(w http.ResponseWriter, r *http.Request, info requestInfo) {
	if info.verb != "create" {
		writeError(w, r, apierrors.NewMethodNotSupported(info.kind.GroupResource(), info.verb+" token"))
		return
	}
	if s.sa == nil {
		writeError(w, r, apierrors.NewServiceUnavailable("this server issues no service account tokens"))
		return
	}
	obj, warnings, err := s.decodeObjectAs(r, authenticationv1.SchemeGroupVersion.WithKind("TokenRequest"), &authenticationv1.TokenRequest{})
	if err != nil {
		writeError(w, r, err)
		return
	}
	out, more, err := s.sa.requests.Create(r.Context(), info.namespace, info.name, obj.(*authenticationv1.TokenRequest), userFrom(r.Context()))
	if err != nil {
		writeError(w, r, err)
		return
	}
	setWarnings(w, append(warnings, more...))
	out.Kind, out.APIVersion = "TokenRequest", authenticationv1.SchemeGroupVersion.String()
	writeObject(w, r, http.StatusCreated, negotiateOr(r), out)
}

// serveOpenID serves the OIDC discovery documents, as kube-apiserver does (to authenticated
// clients; the system:service-account-issuer-discovery role opens them wider).
func (s *Server) serveOpenID(w http.ResponseWriter, r *http.Request, path string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeError(w, r, apierrors.NewMethodNotSupported(schema.GroupResource{}, r.Method))
		return
	}
	if s.sa == nil {
		writeError(w, r, notFoundPath(r))
		return
	}
	md := s.sa.openid
	if md == nil {
		host := r.Host
		if _, _, err := net.SplitHostPort(host); err != nil && r.TLS == nil {
			host = net.JoinHostPort(host, "443")
		}
		var err error
		if md, err = serviceaccount.NewOpenIDMetadata(s.sa.issuer, "", host, s.sa.keys); err != nil {
			writeError(w, r, apierrors.NewInternalError(err))
			return
		}
	}
	body, ctype := md.Config, "application/json"
	if "/"+path == serviceaccount.JWKSPath {
		body, ctype = md.Keys, "application/jwk-set+json"
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(md.MaxAge))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body) // the client may be gone
	}
}

// storeGetter reads what tokens name from the projection.
type storeGetter struct{ store *projections.Store }

func (g storeGetter) ServiceAccount(namespace, name string) (*corev1.ServiceAccount, error) {
	return getTyped[*corev1.ServiceAccount](g.store, corev1.Resource("serviceaccounts"), namespace, name)
}

func (g storeGetter) Pod(namespace, name string) (*corev1.Pod, error) {
	return getTyped[*corev1.Pod](g.store, corev1.Resource("pods"), namespace, name)
}

func (g storeGetter) Secret(namespace, name string) (*corev1.Secret, error) {
	return getTyped[*corev1.Secret](g.store, corev1.Resource("secrets"), namespace, name)
}

func (g storeGetter) Node(name string) (*corev1.Node, error) {
	return getTyped[*corev1.Node](g.store, corev1.Resource("nodes"), "", name)
}

func getTyped[T any](store *projections.Store, gr schema.GroupResource, namespace, name string) (T, error) {
	var zero T
	o, ok := store.Get(eventlog.Key{Group: gr.Group, Resource: gr.Resource, Namespace: namespace, Name: name})
	if !ok {
		return zero, apierrors.NewNotFound(gr, name)
	}
	obj, err := o.Decode()
	if err != nil {
		return zero, apierrors.NewInternalError(err)
	}
	t, ok := obj.(T)
	if !ok {
		return zero, apierrors.NewInternalError(fmt.Errorf("%s %s/%s decodes to %T", gr, namespace, name, obj))
	}
	return t, nil
}
