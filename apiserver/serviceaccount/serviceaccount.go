// Package serviceaccount issues and verifies service account tokens as Kubernetes does (a port of
// k8s.io/kubernetes pkg/serviceaccount): JSON Web Tokens signed with a key kept under the data
// directory's pki/ (sa.key, as kubeadm names it), whose claims carry the issuer, the audiences,
// the expiry and, under "kubernetes.io", the namespace, the service account and the object the
// token is bound to (a pod, with its node, a secret or a node). Authenticator verifies them for
// the API server's authenticator chain: a bad signature, another issuer, a wrong audience, an
// expired token, or one whose service account or bound object was deleted (or recreated with
// another uid) does not authenticate. OpenIDMetadata renders the OIDC discovery documents
// (/.well-known/openid-configuration, /openid/v1/jwks) as kube-apiserver serves them.
package serviceaccount

import "time"

// What Kubernetes names.
const (
	// DefaultIssuer is the issuer (the "iss" claim) and the API server's audience when none is
	// configured: the one kubeadm and kind configure.
	DefaultIssuer = "https://kubernetes.default.svc.cluster.local"
	// WarnOnlyBoundTokenExpirationSeconds is the expiry of the tokens of the projected volume
	// that the ServiceAccount admission adds to pods (1 hour and 7 seconds): the API server
	// recognises it and extends such tokens to ExpirationExtensionSeconds, recording when they
	// should have been refreshed ("warnafter").
	WarnOnlyBoundTokenExpirationSeconds = 60*60 + 7
	// ExpirationExtensionSeconds is how long such a token is valid in truth (one year).
	ExpirationExtensionSeconds = 24 * 365 * 60 * 60
	// OpenIDConfigPath and JWKSPath are the paths of the OIDC discovery documents.
	OpenIDConfigPath = "/.well-known/openid-configuration"
	JWKSPath         = "/openid/v1/jwks"
	// KeyFile and PublicKeyFile are the signing key's files under the pki directory.
	KeyFile       = "sa.key"
	PublicKeyFile = "sa.pub"
)

// leeway is go-jose's jwt.DefaultLeeway: how far clocks may disagree.
const leeway = time.Minute
