package apiserver

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/group"
	"k8s.io/apiserver/pkg/authentication/request/anonymous"
	"k8s.io/apiserver/pkg/authentication/request/bearertoken"
	"k8s.io/apiserver/pkg/authentication/request/union"
	x509request "k8s.io/apiserver/pkg/authentication/request/x509"
	tokenunion "k8s.io/apiserver/pkg/authentication/token/union"
	"k8s.io/apiserver/pkg/authentication/user"
	genericrequest "k8s.io/apiserver/pkg/endpoints/request"

	"github.com/logplane/logplane/registry"
)

// newAuthenticator chains k8s.io/apiserver's authenticators as kube-apiserver chains them: a
// client certificate verified against the TLS configuration's client CAs (the user is its CN,
// the groups its O), then a bearer token of tokens (kube-apiserver's --token-auth-file:
// k8s.io/apiserver/pkg/authentication/token/tokenfile) or a service account token (saTokens);
// an authenticated user is also in
// system:authenticated; with anonymous set, a request with no credentials is system:anonymous
// (and one with wrong credentials still fails).
func newAuthenticator(tlsConfig *tls.Config, tokens, saTokens authenticator.Token, anon bool) authenticator.Request {
	var chain []authenticator.Request
	if tlsConfig != nil && tlsConfig.ClientCAs != nil {
		opts := x509request.DefaultVerifyOptions()
		opts.Roots = tlsConfig.ClientCAs
		chain = append(chain, handshakeCertificate{full: x509request.New(opts, x509request.CommonNameUserConversion)})
	}
	var bearer []authenticator.Token
	for _, t := range []authenticator.Token{tokens, saTokens} {
		if t != nil {
			bearer = append(bearer, t)
		}
	}
	if len(bearer) > 0 {
		chain = append(chain, bearertoken.New(tokenunion.New(bearer...)))
	}
	a := group.NewAuthenticatedGroupAdder(union.New(chain...))
	if anon {
		return union.NewFailOnError(a, anonymous.NewAuthenticator(nil))
	}
	return a
}

// handshakeCertificate authenticates a request by the client certificate chain that its TLS
// handshake verified (pki's tls.VerifyClientCertIfGiven: the client CAs and the client-auth
// usage, which kube-apiserver's x509 authenticator checks), made a user by that authenticator's
// CommonNameUserConversion, so that the chain is not verified again on every request of a
// connection (about 80 µs of CPU each, a third of a create's). A certificate that has expired
// since, or one that no handshake verified (another TLS configuration), goes through the x509
// authenticator itself.
type handshakeCertificate struct {
	full authenticator.Request
}

func (h handshakeCertificate) AuthenticateRequest(r *http.Request) (*authenticator.Response, bool, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, false, nil
	}
	if len(r.TLS.VerifiedChains) == 0 || time.Now().After(r.TLS.PeerCertificates[0].NotAfter) {
		return h.full.AuthenticateRequest(r)
	}
	var errs []error
	for _, chain := range r.TLS.VerifiedChains {
		resp, ok, err := x509request.CommonNameUserConversion.User(chain)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ok {
			return resp, true, nil
		}
	}
	return nil, false, errors.Join(errs...)
}

// authenticate finds who sent r; false if nobody could be authenticated (401).
func (s *Server) authenticate(r *http.Request) (user.Info, bool) {
	resp, ok, err := s.authn.AuthenticateRequest(r)
	if err != nil || !ok {
		if err != nil {
			s.logger.Debug("apiserver: authentication failed", "path", r.URL.Path, "err", err)
		}
		return nil, false
	}
	return resp.User, true
}

// userFrom is the user a request was authenticated as; nobody (no name) for the public paths
// served without credentials.
func userFrom(ctx context.Context) user.Info {
	if u, ok := genericrequest.UserFrom(ctx); ok {
		return u
	}
	return &user.DefaultInfo{}
}

// actorOf is the actor an authenticated user writes as: node agents (system:node:<name>)
// as nodes, everyone else as users.
func actorOf(u user.Info) registry.Actor {
	name := u.GetName()
	if n, ok := strings.CutPrefix(name, "system:node:"); ok && n != "" {
		return registry.Node(n)
	}
	if name == "" {
		return registry.User(user.Anonymous)
	}
	return registry.User(name)
}

// serveSelfSubjectReview tells a client who it is authenticated as (kubectl auth whoami), as
// Kubernetes' selfsubjectreviews storage does.
func (s *Server) serveSelfSubjectReview(w http.ResponseWriter, r *http.Request) {
	u := userFrom(r.Context())
	review := &authenticationv1.SelfSubjectReview{
		ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(s.reg.Now())},
		Status: authenticationv1.SelfSubjectReviewStatus{UserInfo: authenticationv1.UserInfo{
			Username: u.GetName(), UID: u.GetUID(), Groups: u.GetGroups()}},
	}
	if extra := u.GetExtra(); len(extra) > 0 {
		review.Status.UserInfo.Extra = make(map[string]authenticationv1.ExtraValue, len(extra))
		for k, v := range extra {
			review.Status.UserInfo.Extra[k] = v
		}
	}
	review.Kind, review.APIVersion = "SelfSubjectReview", "authentication.k8s.io/v1"
	writeObject(w, r, http.StatusCreated, negotiateOr(r), review)
}
