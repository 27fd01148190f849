package serviceaccount

import (
	"encoding/json"
	"fmt"
	"net/url"

	jose "github.com/go-jose/go-jose/v4"
)

// OpenIDMetadata holds the OIDC discovery documents of the issuer, rendered once, as
// kube-apiserver's openidConfigProvider renders them.
type OpenIDMetadata struct {
	// Config is /.well-known/openid-configuration; Keys is /openid/v1/jwks.
	Config, Keys []byte
	// MaxAge is their Cache-Control max-age (seconds).
	MaxAge int
}

// NewOpenIDMetadata renders the documents of issuer (an https URL with no query or fragment),
// whose keys are served at jwksURI (default: https://<externalAddress>/openid/v1/jwks).
func NewOpenIDMetadata(issuer, jwksURI, externalAddress string, keys []*Key) (*OpenIDMetadata, error) {
	iss, err := url.Parse(issuer)
	if err != nil {
		return nil, fmt.Errorf("serviceaccount: issuer URL: %w", err)
	}
	if iss.Scheme != "https" {
		return nil, fmt.Errorf("serviceaccount: issuer URL must use https scheme, got: %s", issuer)
	}
	if iss.RawQuery != "" || iss.Fragment != "" {
		return nil, fmt.Errorf("serviceaccount: issuer URL may not include a query or a fragment, got: %s", issuer)
	}
	if jwksURI == "" {
		if externalAddress == "" {
			return nil, fmt.Errorf("serviceaccount: either the JWKS URI or the external address must be set")
		}
		jwksURI = (&url.URL{Scheme: "https", Host: externalAddress, Path: JWKSPath}).String()
	}
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		jwk := jose.JSONWebKey{Algorithm: string(jose.RS256), Key: &k.Private.PublicKey, KeyID: k.ID, Use: "sig"}
		set.Keys = append(set.Keys, jwk)
	}
	keysJSON, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("serviceaccount: failed to marshal service account issuer JWKS: %w", err)
	}
	config := struct {
		Issuer        string   `json:"issuer"`
		JWKSURI       string   `json:"jwks_uri"`
		ResponseTypes []string `json:"response_types_supported"`
		SubjectTypes  []string `json:"subject_types_supported"`
		SigningAlgs   []string `json:"id_token_signing_alg_values_supported"`
	}{Issuer: issuer, JWKSURI: jwksURI, ResponseTypes: []string{"id_token"}, SubjectTypes: []string{"public"}, SigningAlgs: []string{string(jose.RS256)}}
	configJSON, err := json.Marshal(config)
	if err != nil {
		return nil, fmt.Errorf("serviceaccount: failed to marshal service account issuer metadata: %w", err)
	}
	return &OpenIDMetadata{Config: configJSON, Keys: keysJSON, MaxAge: 3600}, nil
}
