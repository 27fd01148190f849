package serviceaccount

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/utils/clock"
)

// Signer signs tokens for one issuer with one key (Kubernetes' JWTTokenGenerator).
type Signer struct {
	issuer string
	signer jose.Signer
}

// NewSigner returns a signer of tokens from issuer with key (RS256, the key's ID in "kid").
func NewSigner(issuer string, key *Key) (*Signer, error) {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: &jose.JSONWebKey{
		Algorithm: string(jose.RS256), Key: key.Private, KeyID: key.ID, Use: "sig"}}, nil)
	if err != nil {
		return nil, fmt.Errorf("serviceaccount: failed to create signer: %w", err)
	}
	return &Signer{issuer: issuer, signer: s}, nil
}

// sign is Kubernetes' GenerateToken: the private claims, then the public ones, then the issuer,
// each taking precedence over the previous.
func (s *Signer) sign(public *jwt.Claims, private *privateClaims) (string, error) {
	return jwt.Signed(s.signer).Claims(private).Claims(public).Claims(&jwt.Claims{Issuer: s.issuer}).Serialize()
}

// Authenticator authenticates bearer tokens that a Signer of one of its issuers signed with one
// of its keys (Kubernetes' JWTTokenAuthenticator with its service account validator); it is an
// authenticator.Token for k8s.io/apiserver's bearer token authenticator. A token of another
// issuer is not its business (not authenticated, no error), so that the next authenticator of a
// union may try it; a token of its issuer that fails any check is an error (401).
type Authenticator struct {
	issuers   map[string]bool
	keys      map[string]*Key // by key ID
	audiences authenticator.Audiences
	getter    Getter
	clock     clock.PassiveClock
}

// AuthenticatorConfig configures an Authenticator.
type AuthenticatorConfig struct {
	// Issuers accepted in the "iss" claim. Required.
	Issuers []string
	// Keys whose signatures are accepted. Required.
	Keys []*Key
	// Audiences are the API server's (kube-apiserver's --api-audiences): a token must name one
	// of them. Default: the first issuer.
	Audiences []string
	// Getter reads the service accounts and bound objects tokens name. Required.
	Getter Getter
	// Clock. Default: the real clock.
	Clock clock.PassiveClock
}

// NewAuthenticator returns an Authenticator.
func NewAuthenticator(cfg AuthenticatorConfig) (*Authenticator, error) {
	if len(cfg.Issuers) == 0 || len(cfg.Keys) == 0 || cfg.Getter == nil {
		return nil, errors.New("serviceaccount: an authenticator needs issuers, keys and a getter")
	}
	a := &Authenticator{issuers: map[string]bool{}, keys: map[string]*Key{}, audiences: cfg.Audiences, getter: cfg.Getter, clock: cfg.Clock}
	for _, iss := range cfg.Issuers {
		a.issuers[iss] = true
	}
	for _, k := range cfg.Keys {
		a.keys[k.ID] = k
	}
	if len(a.audiences) == 0 {
		a.audiences = authenticator.Audiences{cfg.Issuers[0]}
	}
	if a.clock == nil {
		a.clock = clock.RealClock{}
	}
	return a, nil
}

var _ authenticator.Token = (*Authenticator)(nil)

// AuthenticateToken implements authenticator.Token.
func (a *Authenticator) AuthenticateToken(ctx context.Context, token string) (*authenticator.Response, bool, error) {
	if !a.hasIssuer(token) {
		return nil, false, nil
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return nil, false, nil
	}
	var kid string
	for _, h := range tok.Headers {
		if h.KeyID != "" {
			kid = h.KeyID
			break
		}
	}
	keys := a.keysFor(kid)
	if len(keys) == 0 {
		return nil, false, errors.New("invalid signature, no keys found")
	}
	public, private := &jwt.Claims{}, &privateClaims{}
	var errs []error
	found := false
	for _, k := range keys {
		if err := tok.Claims(&k.Private.PublicKey, public, private); err != nil {
			errs = append(errs, err)
			continue
		}
		found = true
		break
	}
	if !found {
		return nil, false, errors.Join(errs...)
	}
	if !a.issuers[public.Issuer] {
		return nil, false, fmt.Errorf("token issuer %q is invalid", public.Issuer)
	}
	tokenAudiences := authenticator.Audiences(public.Audience)
	if len(tokenAudiences) == 0 {
		tokenAudiences = a.audiences // a legacy token: the API server's audiences
	}
	requested, ok := authenticator.AudiencesFrom(ctx)
	if !ok {
		requested = a.audiences
	}
	auds := tokenAudiences.Intersect(requested)
	if len(auds) == 0 {
		return nil, false, fmt.Errorf("token audiences %q is invalid for the target audiences %q", tokenAudiences, requested)
	}
	info, err := validate(ctx, a.clock.Now(), a.getter, public, private)
	if err != nil {
		return nil, false, err
	}
	return &authenticator.Response{User: info.UserInfo(), Audiences: auds}, true, nil
}

func (a *Authenticator) keysFor(kid string) []*Key {
	if kid != "" {
		if k, ok := a.keys[kid]; ok {
			return []*Key{k}
		}
		return nil
	}
	out := make([]*Key, 0, len(a.keys))
	for _, k := range a.keys {
		out = append(out, k)
	}
	return out
}

// hasIssuer is Kubernetes' hasCorrectIssuer: whether token is a compact JWT whose (not yet
// verified) "iss" claim is one of ours.
func (a *Authenticator) hasIssuer(token string) bool {
	if strings.HasPrefix(strings.TrimSpace(token), "{") {
		return false
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return false
	}
	var claims struct {
		Issuer string `json:"iss"` // not verified: do not trust
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return false
	}
	return a.issuers[claims.Issuer]
}
