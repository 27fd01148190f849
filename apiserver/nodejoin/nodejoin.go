// Package nodejoin lets a new machine join the cluster as a node with a bootstrap token, in the
// spirit of kubeadm join: an administrator makes a short-lived token on a control-plane machine
// (`logplane token create`); the new machine pins the cluster CA by its hash, and sends the
// token with a certificate signing request and the public half of a NATS user key it made
// itself; the API server checks and spends the token (once), signs the request as
// system:node:<name> and signs a log credential for that node alone. No private key ever
// leaves the machine that made it: the node gets neither the CA's key nor an admin's.
package nodejoin

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/clock"

	"github.com/logplane/logplane/apiserver/pki"
	"github.com/logplane/logplane/eventlog"
)

// Paths under the API server's address (apiserver.JoinPath).
const (
	Path   = "/logplane/join"    // POST Request, answered with Response
	CAPath = "/logplane/join/ca" // GET: the cluster CA (PEM), which the joining node checks against its hash
)

// DefaultTTL is how long a token is valid unless said otherwise, as kubeadm's.
const DefaultTTL = 24 * time.Hour

// Token is a bootstrap token, "<id>.<secret>" as kubeadm's: 6 and 16 characters of [a-z0-9].
type Token struct{ ID, Secret string }

var tokenRE = regexp.MustCompile(`^([a-z0-9]{6})\.([a-z0-9]{16})$`)

func (t Token) String() string { return t.ID + "." + t.Secret }

// ParseToken reads a token as String writes it.
func ParseToken(s string) (Token, error) {
	m := tokenRE.FindStringSubmatch(s)
	if m == nil {
		return Token{}, errors.New("nodejoin: a token is <6 characters of [a-z0-9]>.<16 characters of [a-z0-9]>")
	}
	return Token{ID: m[1], Secret: m[2]}, nil
}

func randomString(n int) (string, error) {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("nodejoin: %w", err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)] // 256 % 36 = 4: a bias of under 2%, as kubeadm's
	}
	return string(b), nil
}

// record is what the log keeps of a token: a hash of its secret, never the secret.
type record struct {
	SecretSHA256 string    `json:"secretSHA256"`
	Expires      time.Time `json:"expires"`
}

func secretHash(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// Create makes a token valid for ttl and records it in the log.
func Create(ctx context.Context, l *eventlog.Log, clk clock.PassiveClock, ttl time.Duration) (Token, error) {
	if ttl <= 0 {
		return Token{}, fmt.Errorf("nodejoin: a token's ttl must be positive, not %v", ttl)
	}
	id, err := randomString(6)
	if err != nil {
		return Token{}, err
	}
	secret, err := randomString(16)
	if err != nil {
		return Token{}, err
	}
	b, err := json.Marshal(record{SecretSHA256: secretHash(secret), Expires: clk.Now().Add(ttl).UTC()})
	if err != nil {
		return Token{}, fmt.Errorf("nodejoin: %w", err)
	}
	if err := l.PutJoinToken(ctx, id, b); err != nil {
		return Token{}, err
	}
	return Token{ID: id, Secret: secret}, nil
}

// CAHash is the pin of a CA certificate (PEM), as kubeadm's --discovery-token-ca-cert-hash:
// "sha256:" and the hex SHA-256 of its SubjectPublicKeyInfo.
func CAHash(caPEM []byte) (string, error) {
	block, _ := pem.Decode(caPEM)
	if block == nil {
		return "", errors.New("nodejoin: the CA is not PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", fmt.Errorf("nodejoin: CA: %w", err)
	}
	h := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(h[:]), nil
}

// Request is what a joining node sends.
type Request struct {
	Token    string `json:"token"`
	NodeName string `json:"nodeName"`
	// CSR is a PEM certificate signing request for the node's streaming endpoint (the names and
	// addresses it serves on); the subject is the server's to set.
	CSR []byte `json:"csr"`
	// NATSUserKey is the public key of the NATS user key the node made.
	NATSUserKey string `json:"natsUserKey"`
}

// Response is what a node that joined gets.
type Response struct {
	// Certificate is the node's certificate (PEM), for user system:node:<name> in system:nodes.
	Certificate []byte `json:"certificate"`
	// CA is the cluster CA (PEM): it verifies the API server, the log's TLS and the certificates
	// of other nodes.
	CA []byte `json:"ca"`
	// NATSUserJWT is the node's credential for the log, signed for its key.
	NATSUserJWT string `json:"natsUserJWT"`
	// NATSPort is the port on which the log listens, at the API server's host.
	NATSPort int `json:"natsPort,omitempty"`
}

// Handler serves Path and CAPath.
type Handler struct {
	Log      *eventlog.Log
	CA       *pki.CA
	NATSPort int
	Clock    clock.PassiveClock
	Logger   *slog.Logger
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == CAPath && r.Method == http.MethodGet:
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(h.CA.CertPEM) // a write error is the client's going away
	case r.URL.Path == Path && r.Method == http.MethodPost:
		resp, err := h.join(r)
		if err != nil {
			writeStatus(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(resp) // a write error is the client's going away
	default:
		writeStatus(w, apierrors.NewMethodNotSupported(schema.GroupResource{Resource: "join"}, r.Method))
	}
}

func writeStatus(w http.ResponseWriter, err error) {
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		st = apierrors.NewInternalError(err)
	}
	s := st.Status()
	s.Kind, s.APIVersion = "Status", "v1"
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(s.Code))
	_ = json.NewEncoder(w).Encode(s) // a write error is the client's going away
}

func (h *Handler) join(r *http.Request) (*Response, error) {
	var req Request
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		return nil, apierrors.NewBadRequest("nodejoin: the request is not a join request: " + err.Error())
	}
	tok, err := ParseToken(req.Token)
	if err != nil {
		return nil, apierrors.NewUnauthorized(err.Error())
	}
	if errs := validation.IsDNS1123Subdomain(req.NodeName); len(errs) > 0 {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("node name %q: %s", req.NodeName, strings.Join(errs, "; ")))
	}
	// Check the request before the token is spent on it.
	if _, err := pki.ParseRequest(req.CSR); err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	b, err := h.Log.TakeJoinToken(r.Context(), tok.ID)
	if errors.Is(err, eventlog.ErrNotFound) {
		h.Logger.Warn("nodejoin: a join with an unknown or used token", "node", req.NodeName, "token", tok.ID, "from", r.RemoteAddr)
		return nil, apierrors.NewUnauthorized("the bootstrap token is unknown, expired or already used")
	}
	if err != nil {
		return nil, err
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("nodejoin: the record of token %s: %w", tok.ID, err)
	}
	if subtle.ConstantTimeCompare([]byte(rec.SecretSHA256), []byte(secretHash(tok.Secret))) != 1 {
		// Spent all the same: whoever guesses ids must not get to try secrets.
		h.Logger.Warn("nodejoin: a join with a wrong token secret; the token is spent", "node", req.NodeName, "token", tok.ID, "from", r.RemoteAddr)
		return nil, apierrors.NewUnauthorized("the bootstrap token is unknown, expired or already used")
	}
	if !h.Clock.Now().Before(rec.Expires) {
		return nil, apierrors.NewUnauthorized("the bootstrap token is unknown, expired or already used")
	}
	user := "system:node:" + req.NodeName
	// Server: the streaming endpoint; client: the node asks the API for its pods' tokens.
	cert, err := h.CA.SignRequest(req.CSR, user, []string{"system:nodes"}, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	jwt, err := h.Log.SignUser(eventlog.Identity{Role: eventlog.RoleNode, Name: req.NodeName}, req.NATSUserKey)
	if errors.Is(err, eventlog.ErrInvalid) {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	if errors.Is(err, eventlog.ErrNoAuthority) {
		return nil, apierrors.NewServiceUnavailable("this API server does not embed the log, and cannot sign its credentials")
	}
	if err != nil {
		return nil, err
	}
	h.Logger.Info("nodejoin: a node joined", "node", req.NodeName, "token", tok.ID, "from", r.RemoteAddr)
	return &Response{Certificate: cert, CA: h.CA.CertPEM, NATSUserJWT: jwt, NATSPort: h.NATSPort}, nil
}

// Join asks the API server at url to let this machine join as node, with token, after checking
// that the server's CA has caHash; csr and natsUserKey are the public halves of keys the caller
// keeps.
func Join(ctx context.Context, url, token, caHash, node string, csr []byte, natsUserKey string) (*Response, error) {
	url = strings.TrimSuffix(url, "/")
	// The CA first, over a connection verified by nothing; then it is trusted only if it is the
	// one the administrator pinned, and everything else goes over TLS verified by it.
	insecure := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}}} //nolint:gosec // checked against the pin below
	caPEM, err := fetch(ctx, insecure, http.MethodGet, url+CAPath, nil)
	if err != nil {
		return nil, err
	}
	got, err := CAHash(caPEM)
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(caHash)) != 1 {
		return nil, fmt.Errorf("nodejoin: the server's CA has hash %s, not %s: refusing to trust it", got, caHash)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	verified := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	body, err := json.Marshal(Request{Token: token, NodeName: node, CSR: csr, NATSUserKey: natsUserKey})
	if err != nil {
		return nil, fmt.Errorf("nodejoin: %w", err)
	}
	b, err := fetch(ctx, verified, http.MethodPost, url+Path, body)
	if err != nil {
		return nil, err
	}
	var resp Response
	if err := json.Unmarshal(b, &resp); err != nil {
		return nil, fmt.Errorf("nodejoin: the answer: %w", err)
	}
	if !bytes.Equal(resp.CA, caPEM) {
		return nil, errors.New("nodejoin: the answer's CA is not the pinned one")
	}
	return &resp, nil
}

func fetch(ctx context.Context, c *http.Client, method, url string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("nodejoin: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("nodejoin: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("nodejoin: %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		var st metav1.Status
		if json.Unmarshal(b, &st) == nil && st.Message != "" {
			return nil, fmt.Errorf("nodejoin: %s: %s (%d)", url, st.Message, resp.StatusCode)
		}
		return nil, fmt.Errorf("nodejoin: %s: %s", url, resp.Status)
	}
	return b, nil
}
