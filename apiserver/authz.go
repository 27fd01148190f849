package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/authorization/union"
	genericrequest "k8s.io/apiserver/pkg/endpoints/request"

	"github.com/logplane/logplane/apiserver/rbac"
)

// newAuthorizer chains authorizers with k8s.io/apiserver's union, as kube-apiserver's default
// chain does: members of system:masters may do anything, then RBAC; with allowAll, everything
// is allowed (Config.AuthorizeAll).
func newAuthorizer(r *rbac.Authorizer, allowAll bool) authorizer.Authorizer {
	if allowAll {
		return fixedDecision{authorizer.DecisionAllow}
	}
	a, err := union.New(
		union.NamedAuthorizer{AuthorizerName: "privileged-groups", Authorizer: privilegedGroup(user.SystemPrivilegedGroup)},
		union.NamedAuthorizer{AuthorizerName: "rbac", Authorizer: r},
	)
	if err != nil {
		panic(err) // the names above are fixed and distinct
	}
	return a
}

// privilegedGroup allows every request of a member of the group, as k8s.io/apiserver's
// authorizerfactory.NewPrivilegedGroups (that package also holds the webhook authorizer, which
// pulls in CEL and OpenTelemetry exporters).
type privilegedGroup string

func (g privilegedGroup) Authorize(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	if u := a.GetUser(); u != nil && contains(u.GetGroups(), string(g)) {
		return authorizer.DecisionAllow, "", nil
	}
	return authorizer.DecisionNoOpinion, "", nil
}

func (g privilegedGroup) ConditionsAwareAuthorize(ctx context.Context, a authorizer.Attributes) authorizer.ConditionsAwareDecision {
	return authorizer.ConditionsAwareDecisionFromParts(g.Authorize(ctx, a))
}

func (privilegedGroup) EvaluateConditions(context.Context, authorizer.ConditionsAwareDecision, authorizer.ConditionsData) (authorizer.Decision, string, error) {
	return authorizer.DecisionDeny, "", authorizer.ErrorConditionEvaluationNotSupported
}

// fixedDecision decides every request the same way.
type fixedDecision struct{ d authorizer.Decision }

func (f fixedDecision) Authorize(context.Context, authorizer.Attributes) (authorizer.Decision, string, error) {
	return f.d, "", nil
}

func (f fixedDecision) ConditionsAwareAuthorize(ctx context.Context, a authorizer.Attributes) authorizer.ConditionsAwareDecision {
	return authorizer.ConditionsAwareDecisionFromParts(f.Authorize(ctx, a))
}

func (fixedDecision) EvaluateConditions(context.Context, authorizer.ConditionsAwareDecision, authorizer.ConditionsData) (authorizer.Decision, string, error) {
	return authorizer.DecisionDeny, "", authorizer.ErrorConditionEvaluationNotSupported
}

// attributesOf are the authorization attributes of a request, as k8s.io/apiserver's
// GetAuthorizerAttributes makes them from the RequestInfo.
func attributesOf(u user.Info, r *http.Request, ri *genericrequest.RequestInfo) authorizer.AttributesRecord {
	a := authorizer.AttributesRecord{User: u, Path: r.URL.Path}
	if ri == nil {
		a.Verb = strings.ToLower(r.Method)
		return a
	}
	a.Verb = ri.Verb
	if !ri.IsResourceRequest {
		return a
	}
	a.ResourceRequest = true
	a.APIGroup, a.APIVersion = ri.APIGroup, ri.APIVersion
	a.Resource, a.Subresource = ri.Resource, ri.Subresource
	a.Namespace, a.Name = ri.Namespace, ri.Name
	return a
}

// authorize decides a request; false once it answered a denial (403, recorded for the audit
// query). Errors of the chain deny, as kube-apiserver's WithAuthorization filter.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, attrs authorizer.Attributes) bool {
	d, reason, err := s.authz.Authorize(r.Context(), attrs)
	if err == nil && d == authorizer.DecisionAllow {
		return true
	}
	if err != nil {
		s.logger.Debug("apiserver: authorization error", "path", r.URL.Path, "err", err)
	}
	s.deny(w, r, attrs, reason)
	return false
}

// allowed is authorize without an answer: for filtering what a read returns.
func (s *Server) allowed(ctx context.Context, attrs authorizer.Attributes) bool {
	d, _, err := s.authz.Authorize(ctx, attrs)
	return err == nil && d == authorizer.DecisionAllow
}

// deny answers a 403 with Kubernetes' message (k8s.io/apiserver's ForbiddenStatusError) and
// records it.
func (s *Server) deny(w http.ResponseWriter, r *http.Request, attrs authorizer.Attributes, reason string) {
	err := forbidden(attrs, reason)
	s.denials.record(denial{time: s.reg.Now(), attrs: attrs, message: err.ErrStatus.Message})
	writeError(w, r, err)
}

// forbidden is k8s.io/apiserver's responsewriters.ForbiddenStatusError (that package pulls in
// what the daemon does without).
func forbidden(attrs authorizer.Attributes, reason string) *apierrors.StatusError {
	msg := forbiddenMessage(attrs)
	var err error
	if reason == "" {
		err = fmt.Errorf("%s", msg)
	} else {
		err = fmt.Errorf("%s: %s", msg, reason)
	}
	return apierrors.NewForbidden(schema.GroupResource{Group: attrs.GetAPIGroup(), Resource: attrs.GetResource()}, attrs.GetName(), err)
}

func forbiddenMessage(a authorizer.Attributes) string {
	username := ""
	if u := a.GetUser(); u != nil {
		username = u.GetName()
	}
	if !a.IsResourceRequest() {
		return fmt.Sprintf("User %q cannot %s path %q", username, a.GetVerb(), a.GetPath())
	}
	resource := a.GetResource()
	if sub := a.GetSubresource(); sub != "" {
		resource += "/" + sub
	}
	if ns := a.GetNamespace(); ns != "" {
		return fmt.Sprintf("User %q cannot %s resource %q in API group %q in the namespace %q", username, a.GetVerb(), resource, a.GetAPIGroup(), ns)
	}
	return fmt.Sprintf("User %q cannot %s resource %q in API group %q at the cluster scope", username, a.GetVerb(), resource, a.GetAPIGroup())
}

// denial is one refused request.
type denial struct {
	time    time.Time
	attrs   authorizer.Attributes
	message string
}

// deniedRecord is a denial as the log's denial record holds it (JSON).
type deniedRecord struct {
	Server      string    `json:"server"` // the recording server's instance
	Time        time.Time `json:"time"`
	User        string    `json:"user"`
	Groups      []string  `json:"groups,omitempty"`
	Verb        string    `json:"verb"`
	Resourced   bool      `json:"resourceRequest,omitempty"`
	Group       string    `json:"group,omitempty"`
	Version     string    `json:"version,omitempty"`
	Resource    string    `json:"resource,omitempty"`
	Subresource string    `json:"subresource,omitempty"`
	Namespace   string    `json:"namespace,omitempty"`
	Name        string    `json:"name,omitempty"`
	Path        string    `json:"path,omitempty"`
	Message     string    `json:"message"`
}

// deniedRate bounds the denials one server records in the log per second (a burst of twice
// that): beyond it a denial is kept only in the server's memory, and counted.
const deniedRate = 1000

// denials keeps the newest refused requests for the audit query: in memory (a ring), fed by
// this server at once and by the log's denial record (eventlog.Denials) with those of every
// server, from before a restart too.
type denials struct {
	id      string // this server's instance, to skip its own records when they come back
	log     deniedLog
	limit   *rate.Limiter
	dropped prometheus.Counter
	logger  *slog.Logger

	mu   sync.Mutex
	ring []denial
	next int
	full bool
}

// deniedLog is the log's denial record; *eventlog.Denials is one.
type deniedLog interface {
	Record(data []byte) error
	Follow(ctx context.Context, n int, fn func(data []byte)) error
}

func newDenials(n int) *denials {
	return &denials{ring: make([]denial, n), id: string(uuid.NewUUID()), limit: rate.NewLimiter(deniedRate, 2*deniedRate)}
}

// record keeps a denial here, and in the log's record unless over the rate.
func (d *denials) record(x denial) {
	d.add(x)
	if d.log == nil {
		return
	}
	if !d.limit.Allow() {
		if d.dropped != nil {
			d.dropped.Inc()
		}
		return
	}
	data, err := json.Marshal(toRecord(d.id, x))
	if err == nil {
		err = d.log.Record(data)
	}
	if err != nil {
		d.logger.Warn("apiserver: recording a denial in the log", "err", err)
	}
}

// follow adds the denials the log records (the newest ring-full first) until ctx ends.
func (d *denials) follow(ctx context.Context) error {
	return d.log.Follow(ctx, len(d.ring), func(data []byte) {
		var r deniedRecord
		if err := json.Unmarshal(data, &r); err != nil {
			d.logger.Warn("apiserver: an unreadable denial in the log", "err", err)
			return
		}
		if r.Server != d.id {
			d.add(r.denial())
		}
	})
}

// toRecord shortens what a client chose (path, name, message) so that a record stays small.
func toRecord(server string, x denial) deniedRecord {
	a := x.attrs
	cut := func(s string) string {
		if len(s) > 1024 {
			return s[:1024]
		}
		return s
	}
	r := deniedRecord{Server: server, Time: x.time, Verb: cut(a.GetVerb()), Resourced: a.IsResourceRequest(), Group: cut(a.GetAPIGroup()),
		Version: cut(a.GetAPIVersion()), Resource: cut(a.GetResource()), Subresource: cut(a.GetSubresource()),
		Namespace: cut(a.GetNamespace()), Name: cut(a.GetName()), Path: cut(a.GetPath()), Message: cut(x.message)}
	if u := a.GetUser(); u != nil {
		r.User = cut(u.GetName())
		for _, g := range u.GetGroups() {
			if len(r.Groups) == 32 {
				break
			}
			r.Groups = append(r.Groups, cut(g))
		}
	}
	return r
}

func (r deniedRecord) denial() denial {
	return denial{time: r.Time, message: r.Message, attrs: authorizer.AttributesRecord{
		User: &user.DefaultInfo{Name: r.User, Groups: r.Groups}, Verb: r.Verb, ResourceRequest: r.Resourced,
		APIGroup: r.Group, APIVersion: r.Version, Resource: r.Resource, Subresource: r.Subresource,
		Namespace: r.Namespace, Name: r.Name, Path: r.Path}}
}

func (d *denials) add(x denial) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ring[d.next] = x
	d.next = (d.next + 1) % len(d.ring)
	if d.next == 0 {
		d.full = true
	}
}

// list returns the denials kept, in the order they came.
func (d *denials) list() []denial {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.full {
		return append([]denial(nil), d.ring[:d.next]...)
	}
	return append(append([]denial(nil), d.ring[d.next:]...), d.ring[:d.next]...)
}

// impersonate is k8s.io/apiserver's WithImpersonation (legacy mode), ported because that
// package pulls in what the daemon does without: the Impersonate-User, -Group, -Uid and
// -Extra-* headers make the request be served as that user when the requester may
// "impersonate" each of them (users, groups, uids, serviceaccounts, userextras/<key>). It
// returns the request to serve, or false once it answered.
func (s *Server) impersonate(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	reqs, err := impersonationRequests(r.Header)
	if err != nil {
		writeError(w, r, err)
		return nil, false
	}
	if len(reqs) == 0 {
		return r, true
	}
	requestor := userFrom(r.Context())
	groupsSpecified := len(r.Header[authenticationv1.ImpersonateGroupHeader]) > 0
	var username, uid string
	groups := []string{}
	extra := map[string][]string{}
	for _, ir := range reqs {
		attrs := authorizer.AttributesRecord{User: requestor, Verb: "impersonate", APIGroup: ir.group, Namespace: ir.namespace,
			Name: ir.name, ResourceRequest: true}
		switch ir.kind {
		case "ServiceAccount":
			attrs.Resource = "serviceaccounts"
			username = serviceaccount.MakeUsername(ir.namespace, ir.name)
			if !groupsSpecified {
				groups = serviceaccount.MakeGroupNames(ir.namespace)
			}
		case "User":
			attrs.Resource = "users"
			username = ir.name
		case "Group":
			attrs.Resource = "groups"
			groups = append(groups, ir.name)
		case "UserExtra":
			attrs.Resource, attrs.Subresource = "userextras", ir.extraKey
			extra[ir.extraKey] = append(extra[ir.extraKey], ir.name)
		case "UID":
			attrs.Resource = "uids"
			uid = ir.name
		}
		if !s.authorize(w, r, attrs) {
			return nil, false
		}
	}
	if username != user.Anonymous {
		add := true
		for _, g := range groups {
			if g == user.AllAuthenticated || g == user.AllUnauthenticated {
				add = false
			}
		}
		if add {
			groups = append(groups, user.AllAuthenticated)
		}
	} else if !contains(groups, user.AllUnauthenticated) {
		groups = append(groups, user.AllUnauthenticated)
	}
	r = r.WithContext(genericrequest.WithUser(r.Context(), &user.DefaultInfo{Name: username, UID: uid, Groups: groups, Extra: extra}))
	r.Header.Del(authenticationv1.ImpersonateUserHeader)
	r.Header.Del(authenticationv1.ImpersonateGroupHeader)
	r.Header.Del(authenticationv1.ImpersonateUIDHeader)
	for h := range r.Header {
		if strings.HasPrefix(h, authenticationv1.ImpersonateUserExtraHeaderPrefix) {
			r.Header.Del(h)
		}
	}
	return r, true
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

type impersonationRequest struct {
	kind, group, namespace, name, extraKey string
}

// impersonationRequests reads the impersonation headers, as k8s.io/apiserver's
// buildImpersonationRequests: groups, extras or a uid without a user are a 400.
func impersonationRequests(h http.Header) ([]impersonationRequest, error) {
	var out []impersonationRequest
	requested := h.Get(authenticationv1.ImpersonateUserHeader)
	if requested != "" {
		if ns, name, err := serviceaccount.SplitUsername(requested); err == nil {
			out = append(out, impersonationRequest{kind: "ServiceAccount", namespace: ns, name: name})
		} else {
			out = append(out, impersonationRequest{kind: "User", name: requested})
		}
	}
	others := false
	for _, g := range h[authenticationv1.ImpersonateGroupHeader] {
		others = true
		out = append(out, impersonationRequest{kind: "Group", name: g})
	}
	for name, values := range h {
		if !strings.HasPrefix(name, authenticationv1.ImpersonateUserExtraHeaderPrefix) {
			continue
		}
		others = true
		key := strings.ToLower(name[len(authenticationv1.ImpersonateUserExtraHeaderPrefix):])
		if k, err := url.PathUnescape(key); err == nil {
			key = k
		}
		for _, v := range values {
			out = append(out, impersonationRequest{kind: "UserExtra", group: authenticationv1.GroupName, name: v, extraKey: key})
		}
	}
	if uid := h.Get(authenticationv1.ImpersonateUIDHeader); uid != "" {
		others = true
		out = append(out, impersonationRequest{kind: "UID", group: authenticationv1.GroupName, name: uid})
	}
	if others && requested == "" {
		return nil, apierrors.NewBadRequest("requested impersonation of groups, extras or a uid without impersonating a user")
	}
	return out, nil
}
