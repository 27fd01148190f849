package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/logplane/logplane/apiserver/logplaneapi"
	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
	"github.com/logplane/logplane/registry"
)

// AtHeader reads a get or list in the past; see logplaneapi.AtHeader.
const AtHeader = logplaneapi.AtHeader

var logplanePrefix = strings.TrimPrefix(logplaneapi.Prefix, "/")

// serveLogplane serves logplane's own endpoints.
func (s *Server) serveLogplane(w http.ResponseWriter, r *http.Request, rest string) {
	u := userFrom(r.Context())
	if node, ok := nodeImagesRequest(rest); ok {
		// Authorized as create on nodes/images in logplane.io, named for the node.
		if !s.authorize(w, r, authorizer.AttributesRecord{User: u, Verb: "create", APIGroup: "logplane.io", Resource: "nodes",
			Subresource: "images", Name: node, ResourceRequest: true}) {
			return
		}
		s.serveNodeImages(w, r, node) // nodeimages.go
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeError(w, r, apierrors.NewMethodNotSupported(schema.GroupResource{Group: "logplane.io"}, r.Method))
		return
	}
	switch {
	case rest == "status":
		// A non-resource path: cluster-admin and logplane:log-status-viewer may read it.
		if !s.authorize(w, r, authorizer.AttributesRecord{User: u, Verb: "get", Path: r.URL.Path}) {
			return
		}
		s.serveLogStatus(w, r)
	case rest == "audit":
		s.serveAudit(w, r)
	case strings.HasPrefix(rest, "history/"):
		s.serveHistory(w, r, strings.TrimPrefix(rest, "history"))
	default:
		writeError(w, r, notFoundPath(r))
	}
}

func (s *Server) serveLogStatus(w http.ResponseWriter, r *http.Request) {
	first, last, err := s.log.Bounds(r.Context())
	if err != nil {
		writeError(w, r, apierrors.NewServiceUnavailable(err.Error()))
		return
	}
	writeJSON(w, http.StatusOK, mediaJSON, logplaneapi.Status{
		Kind: "Status", APIVersion: "logplane.io/v1alpha1",
		FirstSeq: first, LastSeq: last, Applied: s.store.Applied(), Watchers: int(s.watching.Load()),
	})
}

func (s *Server) serveHistory(w http.ResponseWriter, r *http.Request, objectPath string) {
	inner := r.Clone(r.Context())
	inner.Method = http.MethodGet
	inner.URL.Path = objectPath
	inner.URL.RawQuery = ""
	info := s.parse(inner)
	if info.kind == nil || info.name == "" || info.subresource != "" ||
		(info.kind.Namespaced && info.namespace == "") {
		writeError(w, r, apierrors.NewBadRequest(fmt.Sprintf("%s does not name an object: use the object's Kubernetes path, as in %s",
			objectPath, logplaneapi.HistoryPath("/api/v1/namespaces/default/pods/nginx"))))
		return
	}
	// The history of an object is every value it had: it needs the right to get the object.
	if !s.authorize(w, r, objectAttributes(userFrom(r.Context()), "get", info.kind.Group, info.kind.Version, info.kind.Resource, info.namespace, info.name)) {
		return
	}
	recs, err := s.reg.History(r.Context(), info.kind, info.namespace, info.name)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if len(recs) == 0 {
		writeError(w, r, apierrors.NewNotFound(info.kind.GroupResource(), info.name))
		return
	}
	h := logplaneapi.History{Kind: "History", APIVersion: "logplane.io/v1alpha1",
		Group: info.kind.Group, Resource: info.kind.Resource, Namespace: info.namespace, Name: info.name}
	var prev []byte
	sealed := info.kind.Sealed()
	var prevValues secretValues // of the previous revision of a sealed kind
	for _, rec := range recs {
		if rec.Err != nil {
			if sealed && registry.IsForgotten(rec.Err) {
				rev := revisionOf(rec)
				rev.Object = forgottenObject(info.kind, rec)
				rev.Secret = &logplaneapi.SecretValues{Forgotten: true}
				h.Items = append(h.Items, rev)
				prev, prevValues = nil, nil
			}
			continue
		}
		rev := revisionOf(rec)
		obj, err := objectJSON(info.kind, rec)
		if err != nil {
			writeError(w, r, apierrors.NewInternalError(err))
			return
		}
		if sealed {
			// Never a value: only which keys changed, and their sizes.
			var vals secretValues
			if obj, vals, err = redactSecret(info.kind, obj); err != nil {
				writeError(w, r, apierrors.NewInternalError(err))
				return
			}
			rev.Secret = &logplaneapi.SecretValues{Keys: secretKeys(prevValues, vals)}
			prevValues = vals
			if rec.Tombstone() {
				prevValues = nil
			}
		}
		rev.Object = obj
		if prev != nil && !rec.Tombstone() {
			if patch, err := mergePatch(prev, obj); err == nil {
				rev.Changes = patch
			}
		}
		if rec.Tombstone() {
			prev = nil
		} else {
			prev = obj
		}
		h.Items = append(h.Items, rev)
	}
	if len(h.Items) > 0 && h.Items[0].Cause != "" {
		first, _ := strconv.ParseUint(h.Items[0].Cause, 10, 64) // we formatted it from a uint64
		if h.CausedBy, err = s.causes(r.Context(), first); err != nil {
			writeError(w, r, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, mediaJSON, h)
}

// maxCauses bounds the chain of causes a history follows.
const maxCauses = 32

// causes follows the chain of causes from the event at seq back to one with no cause, nearest
// first. A cause that retention has dropped ends the chain.
func (s *Server) causes(ctx context.Context, seq uint64) ([]logplaneapi.AuditEntry, error) {
	var chain []logplaneapi.AuditEntry
	for seq != 0 && len(chain) < maxCauses {
		var rec eventlog.Record
		err := s.log.Replay(ctx, eventlog.Filter{}, seq-1, seq, func(r eventlog.Record) error {
			rec = r
			return nil
		})
		if errors.Is(err, eventlog.ErrGone) {
			break
		}
		if err != nil {
			return nil, err
		}
		if rec.Seq != seq || rec.Err != nil {
			break // not an object event, or one this server cannot read: the chain ends here
		}
		ref := rec.Event.GetRef()
		if !s.allowed(ctx, objectAttributes(userFrom(ctx), "get", ref.GetGroup(), ref.GetVersion(), ref.GetResource(), ref.GetNamespace(), ref.GetName())) {
			break // a cause the user may not read ends the chain for them
		}
		chain = append(chain, auditEntryOf(rec))
		seq = rec.Event.GetCause()
	}
	return chain, nil
}

func auditEntryOf(rec eventlog.Record) logplaneapi.AuditEntry {
	rev := revisionOf(rec)
	ref := rec.Event.GetRef()
	return logplaneapi.AuditEntry{
		ResourceVersion: rev.ResourceVersion, Time: rev.Time, Type: rev.Type, Reason: rev.Reason,
		Actor: rev.Actor, Cause: rev.Cause, Group: ref.GetGroup(), Version: ref.GetVersion(), Kind: ref.GetKind(),
		Resource: ref.GetResource(), Namespace: ref.GetNamespace(), Name: ref.GetName(), UID: ref.GetUid(),
		Annotations: rec.Event.GetAnnotations(),
	}
}

func revisionOf(rec eventlog.Record) logplaneapi.Revision {
	ev := rec.Event
	rev := logplaneapi.Revision{
		ResourceVersion: strconv.FormatUint(rec.Seq, 10),
		Type:            changeType(ev.GetType()),
		Reason:          ev.GetReason(),
		Actor:           logplaneapi.Actor{Kind: actorKind(ev.GetActor().GetKind()), Name: ev.GetActor().GetName()},
		Time:            rec.Stored,
	}
	if ev.GetTime() != nil {
		rev.Time = ev.GetTime().AsTime()
	}
	if ev.GetCause() != 0 {
		rev.Cause = strconv.FormatUint(ev.GetCause(), 10)
	}
	return rev
}

// objectJSON is the JSON of the object a record carries, with its resourceVersion.
func objectJSON(k *kinds.Kind, rec eventlog.Record) ([]byte, error) {
	e := newEncoded(registry.ObjectOf(k, rec), rec.Seq)
	return e.JSON()
}

// mergePatch is the JSON merge patch from a to b, leaving out resourceVersion and managedFields.
func mergePatch(a, b []byte) (json.RawMessage, error) {
	a, err := withoutNoise(a)
	if err != nil {
		return nil, err
	}
	b, err = withoutNoise(b)
	if err != nil {
		return nil, err
	}
	p, err := jsonpatch.CreateMergePatch(a, b)
	if err != nil {
		return nil, err
	}
	if bytes.Equal(p, []byte("{}")) {
		return nil, nil
	}
	return p, nil
}

func withoutNoise(obj []byte) ([]byte, error) {
	var m map[string]any
	if err := json.Unmarshal(obj, &m); err != nil {
		return nil, err
	}
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "resourceVersion")
		delete(md, "managedFields")
	}
	return json.Marshal(m)
}

func changeType(t eventv1.ChangeType) string {
	switch t {
	case eventv1.ChangeType_CHANGE_TYPE_ADDED:
		return "ADDED"
	case eventv1.ChangeType_CHANGE_TYPE_DELETED:
		return "DELETED"
	}
	return "MODIFIED"
}

func actorKind(k eventv1.ActorKind) string {
	switch k {
	case eventv1.ActorKind_ACTOR_KIND_USER:
		return "user"
	case eventv1.ActorKind_ACTOR_KIND_RECONCILER:
		return "reconciler"
	case eventv1.ActorKind_ACTOR_KIND_NODE:
		return "node"
	case eventv1.ActorKind_ACTOR_KIND_SYSTEM:
		return "system"
	}
	return "unknown"
}

func (s *Server) serveAudit(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Query()
	q := registry.AuditQuery{Actor: p.Get("actor"), Namespace: p.Get("namespace"), Name: p.Get("name")}
	if since := p.Get("since"); since != "" {
		if d, err := time.ParseDuration(since); err == nil {
			q.Since = time.Now().Add(-d)
		} else if t, err := time.Parse(time.RFC3339Nano, since); err == nil {
			q.Since = t
		} else {
			writeError(w, r, apierrors.NewBadRequest(fmt.Sprintf("since must be a duration (1h) or an RFC 3339 time, not %q", since)))
			return
		}
	}
	switch ak := p.Get("actorKind"); ak {
	case "":
	case "user":
		q.Kind = eventv1.ActorKind_ACTOR_KIND_USER
	case "reconciler":
		q.Kind = eventv1.ActorKind_ACTOR_KIND_RECONCILER
	case "node":
		q.Kind = eventv1.ActorKind_ACTOR_KIND_NODE
	case "system":
		q.Kind = eventv1.ActorKind_ACTOR_KIND_SYSTEM
	default:
		writeError(w, r, apierrors.NewBadRequest(fmt.Sprintf("actorKind must be user, reconciler, node or system, not %q", ak)))
		return
	}
	if res := p.Get("resource"); res != "" {
		gr := schema.ParseGroupResource(res)
		if k, ok := s.findResource(gr); ok {
			gr = k.GroupResource()
		}
		q.Resource = gr
	}
	if l := p.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			writeError(w, r, apierrors.NewBadRequest(fmt.Sprintf("invalid limit %q", l)))
			return
		}
		q.Limit = n
	}
	recs, err := s.reg.Audit(r.Context(), q)
	if err != nil {
		writeError(w, r, err)
		return
	}
	// Each entry is shown to those who may get its object (a denial: get what was asked).
	u := userFrom(r.Context())
	out := logplaneapi.Audit{Kind: "Audit", APIVersion: "logplane.io/v1alpha1", Items: []logplaneapi.AuditEntry{}}
	for _, rec := range recs {
		ref := rec.Event.GetRef()
		if !s.allowed(r.Context(), objectAttributes(u, "get", ref.GetGroup(), ref.GetVersion(), ref.GetResource(), ref.GetNamespace(), ref.GetName())) {
			continue
		}
		out.Items = append(out.Items, auditEntryOf(rec))
	}
	out.Items = s.withDenials(r.Context(), u, q, out.Items)
	writeJSON(w, http.StatusOK, mediaJSON, out)
}

// findResource resolves a resource by plural, singular or short name, optionally with a group.
func (s *Server) findResource(gr schema.GroupResource) (*kinds.Kind, bool) {
	for _, k := range s.catalog.All() {
		if gr.Group != "" && k.Group != gr.Group {
			continue
		}
		if k.Resource == gr.Resource || k.Singular == gr.Resource || strings.EqualFold(k.Kind, gr.Resource) {
			return k, true
		}
		for _, sn := range k.ShortNames {
			if sn == gr.Resource {
				return k, true
			}
		}
	}
	return nil, false
}

// objectAttributes are the attributes of a verb on one object (or, with no name, on all of its
// resource in namespace).
func objectAttributes(u user.Info, verb, group, version, resource, namespace, name string) authorizer.AttributesRecord {
	return authorizer.AttributesRecord{User: u, Verb: verb, APIGroup: group, APIVersion: version, Resource: resource,
		Namespace: namespace, Name: name, ResourceRequest: true}
}

// withDenials merges the denied requests that match q into items (by time, oldest first, the
// newest Limit kept): denials of non-resource paths only for those who may read "*" of every
// group (cluster-admin); the others for those who may get what was asked.
func (s *Server) withDenials(ctx context.Context, u user.Info, q registry.AuditQuery, items []logplaneapi.AuditEntry) []logplaneapi.AuditEntry {
	added := false
	for _, d := range s.denials.list() {
		a := d.attrs
		if d.time.Before(q.Since) || (q.Actor != "" && a.GetUser().GetName() != q.Actor) ||
			(q.Kind != 0 && q.Kind != eventv1.ActorKind_ACTOR_KIND_USER) ||
			(q.Resource.Resource != "" && (a.GetResource() != q.Resource.Resource || a.GetAPIGroup() != q.Resource.Group)) ||
			(q.Namespace != "" && a.GetNamespace() != q.Namespace) || (q.Name != "" && a.GetName() != q.Name) {
			continue
		}
		check := objectAttributes(u, "get", a.GetAPIGroup(), a.GetAPIVersion(), a.GetResource(), a.GetNamespace(), a.GetName())
		if !a.IsResourceRequest() {
			check = objectAttributes(u, "get", "*", "*", "*", "", "")
		}
		if !s.allowed(ctx, check) {
			continue
		}
		items = append(items, logplaneapi.AuditEntry{Time: d.time, Type: "DENIED", Denied: true, Reason: "forbidden",
			Actor: logplaneapi.Actor{Kind: "user", Name: a.GetUser().GetName()}, Group: a.GetAPIGroup(), Version: a.GetAPIVersion(),
			Resource: a.GetResource(), Subresource: a.GetSubresource(), Namespace: a.GetNamespace(), Name: a.GetName(),
			Verb: a.GetVerb(), Message: d.message})
		added = true
	}
	if !added {
		return items
	}
	sort.SliceStable(items, func(i, j int) bool { return items[i].Time.Before(items[j].Time) })
	if q.Limit > 0 && len(items) > q.Limit {
		items = items[len(items)-q.Limit:]
	}
	return items
}
