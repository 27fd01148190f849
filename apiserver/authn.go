package apiserver

import (
	"context"
	"crypto/subtle"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"

	"github.com/logplane/logplane/registry"
)

// UserInfo is an authenticated identity.
type UserInfo struct {
	Name   string
	UID    string
	Groups []string
}

type userKey struct{}

func withUser(ctx context.Context, u UserInfo) context.Context {
	return context.WithValue(ctx, userKey{}, u)
}

// UserFrom returns the user a request was authenticated as.
func UserFrom(ctx context.Context) (UserInfo, bool) {
	u, ok := ctx.Value(userKey{}).(UserInfo)
	return u, ok
}

func userFrom(ctx context.Context) UserInfo {
	u, _ := UserFrom(ctx)
	return u
}

// actorOf is the actor an authenticated user writes as: node agents (system:node:<name>)
// as nodes, everyone else as users.
func actorOf(u UserInfo) registry.Actor {
	if n, ok := strings.CutPrefix(u.Name, "system:node:"); ok && n != "" {
		return registry.Node(n)
	}
	if u.Name == "" {
		return registry.User("system:anonymous")
	}
	return registry.User(u.Name)
}

// TokenFile holds static bearer tokens, read from a CSV file in the format of kube-apiserver's
// --token-auth-file: token,user,uid[,"group1,group2,..."].
type TokenFile struct {
	tokens map[string]UserInfo
}

// ReadTokenFile reads a token file.
func ReadTokenFile(path string) (*TokenFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("apiserver: token file: %w", err)
	}
	defer f.Close()
	tf, err := ParseTokens(f)
	if err != nil {
		return nil, fmt.Errorf("apiserver: token file %s: %w", path, err)
	}
	return tf, nil
}

// ParseTokens reads token-file CSV.
func ParseTokens(r io.Reader) (*TokenFile, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	cr.Comment = '#'
	tf := &TokenFile{tokens: map[string]UserInfo{}}
	line := 0
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return tf, nil
		}
		line++
		if err != nil {
			return nil, err
		}
		if len(rec) < 3 {
			return nil, fmt.Errorf("line %d: want token,user,uid[,groups], got %d fields", line, len(rec))
		}
		token, user := strings.TrimSpace(rec[0]), strings.TrimSpace(rec[1])
		if token == "" || user == "" {
			return nil, fmt.Errorf("line %d: empty token or user", line)
		}
		if _, dup := tf.tokens[token]; dup {
			return nil, fmt.Errorf("line %d: duplicate token", line)
		}
		u := UserInfo{Name: user, UID: strings.TrimSpace(rec[2])}
		if len(rec) > 3 {
			for _, g := range strings.Split(rec[3], ",") {
				if g = strings.TrimSpace(g); g != "" {
					u.Groups = append(u.Groups, g)
				}
			}
		}
		tf.tokens[token] = u
	}
}

// Lookup returns the user of a token.
func (tf *TokenFile) Lookup(token string) (UserInfo, bool) {
	if tf == nil {
		return UserInfo{}, false
	}
	// Compare in constant time, against every token, so timing says nothing of the tokens.
	var found UserInfo
	ok := false
	for t, u := range tf.tokens {
		if subtle.ConstantTimeCompare([]byte(t), []byte(token)) == 1 {
			found, ok = u, true
		}
	}
	return found, ok
}

// authenticate finds who sent r: a verified client certificate (CN is the user, O the groups),
// or a bearer token from the token file.
func (s *Server) authenticate(r *http.Request) (UserInfo, bool) {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		c := r.TLS.VerifiedChains[0][0]
		if c.Subject.CommonName != "" {
			return UserInfo{Name: c.Subject.CommonName, Groups: c.Subject.Organization}, true
		}
	}
	if h := r.Header.Get("Authorization"); h != "" {
		if token, ok := strings.CutPrefix(h, "Bearer "); ok {
			if u, ok := s.cfg.Tokens.Lookup(strings.TrimSpace(token)); ok {
				return u, true
			}
		}
		return UserInfo{}, false
	}
	if s.cfg.Anonymous {
		return UserInfo{Name: "system:anonymous", Groups: []string{"system:unauthenticated"}}, true
	}
	return UserInfo{}, false
}

// serveSelfSubjectReview tells a client who it is authenticated as (kubectl auth whoami).
func (s *Server) serveSelfSubjectReview(w http.ResponseWriter, r *http.Request) {
	u := userFrom(r.Context())
	review := &authenticationv1.SelfSubjectReview{Status: authenticationv1.SelfSubjectReviewStatus{
		UserInfo: authenticationv1.UserInfo{Username: u.Name, UID: u.UID, Groups: append(slices.Clone(u.Groups), "system:authenticated")}}}
	review.Kind, review.APIVersion = "SelfSubjectReview", "authentication.k8s.io/v1"
	writeObject(w, r, http.StatusCreated, negotiateOr(r), review)
}
