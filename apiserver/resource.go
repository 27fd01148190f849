package apiserver

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/registry"
)

// serveResource serves a request on a resource of the catalog.
func (s *Server) serveResource(w http.ResponseWriter, r *http.Request, info requestInfo) {
	k := info.kind
	if info.subresource != "" && !k.HasSubresource(info.subresource) {
		writeError(w, r, notFoundPath(r))
		return
	}
	out, err := negotiateFor(r, k)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if out.as == "Table" && info.verb != "get" && info.verb != "list" && info.verb != "watch" {
		out.as = ""
	}
	switch info.subresource {
	case "", "status":
	case "scale":
		s.serveScale(w, r, info, out)
		return
	case "binding":
		s.serveBinding(w, r, info)
		return
	case "eviction":
		s.serveEviction(w, r, info)
		return
	case "token":
		s.serveTokenRequest(w, r, info) // tokens.go
		return
	case "finalize":
		if info.verb == "update" {
			s.serveUpdate(w, r, info, out)
			return
		}
		writeError(w, r, apierrors.NewMethodNotSupported(k.GroupResource(), info.verb))
		return
	default:
		writeError(w, r, apierrors.NewMethodNotSupported(k.GroupResource(), info.verb+" "+info.subresource))
		return
	}
	if info.subresource == "" && !slices.Contains(k.ResourceVerbs(), info.verb) {
		writeError(w, r, apierrors.NewMethodNotSupported(k.GroupResource(), info.verb))
		return
	}
	if info.subresource == "status" && (info.verb == "create" || info.verb == "delete") {
		writeError(w, r, apierrors.NewMethodNotSupported(k.GroupResource(), info.verb+" status"))
		return
	}
	switch info.verb {
	case "get":
		s.serveGet(w, r, info, out)
	case "list":
		s.serveList(w, r, info, out)
	case "watch":
		s.serveWatch(w, r, info, out)
	case "create":
		if info.name != "" {
			writeError(w, r, apierrors.NewMethodNotSupported(k.GroupResource(), "create"))
			return
		}
		s.serveCreate(w, r, info, out)
	case "update":
		s.serveUpdate(w, r, info, out)
	case "patch":
		s.servePatch(w, r, info, out)
	case "delete":
		s.serveDelete(w, r, info, out)
	case "deletecollection":
		s.serveDeleteCollection(w, r, info, out)
	default:
		writeError(w, r, apierrors.NewMethodNotSupported(k.GroupResource(), r.Method))
	}
}

// negotiateFor negotiates the response format of a request on kind k: objects of a kind without
// a Go type (custom resources) have no protobuf encoding, so for them the server offers JSON and
// YAML only, as Kubernetes' apiextensions server does.
func negotiateFor(r *http.Request, k *kinds.Kind) (output, error) {
	if k.Unstructured {
		return negotiateWith(r, unstructuredMediaTypes, resourceEndpoint{})
	}
	return negotiate(r, resourceEndpoint{})
}

// readOptions reads resourceVersion, resourceVersionMatch and the time-travel header. asOf is
// the time the header names, zero if it names a resourceVersion or is absent (see asOf).
func (s *Server) readOptions(r *http.Request) (opts registry.ReadOptions, asOf time.Time, err error) {
	q := r.URL.Query()
	opts = registry.ReadOptions{
		ResourceVersion:      q.Get("resourceVersion"),
		ResourceVersionMatch: metav1.ResourceVersionMatch(q.Get("resourceVersionMatch")),
	}
	at := r.Header.Get(AtHeader)
	if at == "" {
		return opts, time.Time{}, nil
	}
	opts.At, asOf, err = s.resolveAt(r, at)
	return opts, asOf, err
}

// resolveAt reads a point in the past: a resourceVersion (checked against the log when read:
// one it does not hold yet is 504 "Too large resource version"), or an RFC 3339 time, which
// must not be in the future (400).
func (s *Server) resolveAt(r *http.Request, at string) (uint64, time.Time, error) {
	if n, err := strconv.ParseUint(at, 10, 64); err == nil {
		if n == 0 {
			return 0, time.Time{}, apierrors.NewBadRequest("the resourceVersion to read at must be positive")
		}
		return n, time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		return 0, time.Time{}, apierrors.NewBadRequest(fmt.Sprintf("%s must be a resourceVersion or an RFC 3339 time, not %q", AtHeader, at))
	}
	if now := s.reg.Now(); t.After(now) {
		return 0, time.Time{}, apierrors.NewBadRequest(fmt.Sprintf("cannot read the state at %s: it is in the future (the server's time is %s)",
			at, now.UTC().Format(time.RFC3339)))
	}
	seq, err := s.reg.SeqAt(r.Context(), t)
	if err != nil {
		return 0, time.Time{}, err
	}
	if seq == 0 {
		return 0, time.Time{}, apierrors.NewNotFound(s.catalogResourceless(), fmt.Sprintf("state at %s (the log starts later)", at))
	}
	return seq, t, nil
}

// asOf is the time a read in the past sees, for the ages of Table rows: the time the request
// named, else the time the event at its resourceVersion was stored. Zero for a read of the
// present.
func (s *Server) asOf(r *http.Request, opts registry.ReadOptions, named time.Time) (time.Time, error) {
	if opts.At == 0 || !named.IsZero() {
		return named, nil
	}
	return s.reg.TimeOf(r.Context(), opts.At)
}

func (s *Server) serveGet(w http.ResponseWriter, r *http.Request, info requestInfo, out output) {
	opts, named, err := s.readOptions(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	o, err := s.reg.GetObject(r.Context(), info.kind, info.namespace, info.name, opts)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if out.as == "Table" {
		asOf, err := s.asOf(r, opts, named)
		if err != nil {
			writeError(w, r, err)
			return
		}
		t, err := s.table(r, info.kind, []*projections.Object{o}, metav1.ListMeta{ResourceVersion: strconv.FormatUint(o.Seq, 10)}, asOf)
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeObject(w, r, http.StatusOK, out, t)
		return
	}
	if out.as == "PartialObjectMetadata" {
		obj, err := o.Decode()
		if err != nil {
			writeError(w, r, apierrors.NewInternalError(err))
			return
		}
		writeObject(w, r, http.StatusOK, out, partialMetadata(obj))
		return
	}
	if out.as != "" {
		writeError(w, r, notAcceptable(info))
		return
	}
	s.writeStored(w, r, http.StatusOK, out, info.kind, o)
}

func notAcceptable(info requestInfo) error {
	return apierrors.NewGenericServerResponse(http.StatusNotAcceptable, info.verb, info.kind.GroupResource(), "",
		"the requested representation is not available for this request", 0, false)
}

// listQuery is the query of a list, watch or deletecollection: its namespace, and the selectors
// of opts (see listOptions), field labels being those of the kind asked for.
func listQuery(info requestInfo, opts metainternalversion.ListOptions) (registry.Query, error) {
	q := registry.Query{Namespace: info.namespace, Labels: opts.LabelSelector}
	// Field labels are those of the kind asked for; the objects carry the stored kind's fields
	// (an events.k8s.io selector on regarding.name selects on involvedObject.name).
	fs, err := opts.FieldSelector.Transform(func(field, value string) (string, string, error) {
		stored, ok := info.kind.SelectableField(field)
		if !ok {
			return "", "", fmt.Errorf("field label not supported: %s", field)
		}
		return stored, value, nil
	})
	if err != nil {
		return q, apierrors.NewBadRequest(err.Error())
	}
	q.Fields = fs
	return q, nil
}

// continueToken is what a list's continue value carries: the snapshot the pages are cut from,
// its resourceVersion, and the last key returned.
type continueToken struct {
	ID        string `json:"id"`
	RV        uint64 `json:"rv"`
	Namespace string `json:"ns,omitempty"`
	Name      string `json:"n"`
}

func encodeContinue(t continueToken) string {
	b, _ := json.Marshal(t) // a struct of strings and numbers always marshals
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeContinue(s string) (continueToken, error) {
	var t continueToken
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &t)
	}
	if err != nil || t.Name == "" || t.ID == "" {
		return t, apierrors.NewBadRequest("invalid continue token")
	}
	return t, nil
}

// pageSnapshots keep the result of a paged list, so that every page of it comes from the same
// state (objects are immutable revisions: a snapshot is a slice of pointers). A continue token
// whose snapshot expired (or that another server made) is 410 Gone, as on Kubernetes, and
// clients start the list again.
type pageSnapshots struct {
	mu    sync.Mutex
	m     map[string]*pageSnapshot
	order []string
}

type pageSnapshot struct {
	objs    []*projections.Object
	rv      uint64
	created time.Time
}

const (
	pageSnapshotTTL = 5 * time.Minute
	maxSnapshots    = 512
)

func (p *pageSnapshots) put(objs []*projections.Object, rv uint64) string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand does not fail
	id := base64.RawURLEncoding.EncodeToString(b[:])
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]*pageSnapshot{}
	}
	now := time.Now()
	for len(p.order) > 0 && (len(p.order) >= maxSnapshots || now.Sub(p.m[p.order[0]].created) > pageSnapshotTTL) {
		delete(p.m, p.order[0])
		p.order = p.order[1:]
	}
	p.m[id] = &pageSnapshot{objs: objs, rv: rv, created: now}
	p.order = append(p.order, id)
	return id
}

func (p *pageSnapshots) get(id string) (*pageSnapshot, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	sn, ok := p.m[id]
	if !ok || time.Since(sn.created) > pageSnapshotTTL {
		return nil, false
	}
	return sn, true
}

func (s *Server) serveList(w http.ResponseWriter, r *http.Request, info requestInfo, out output) {
	lo, err := listOptions(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	q, err := listQuery(info, lo)
	if err != nil {
		writeError(w, r, err)
		return
	}
	opts, named, err := s.readOptions(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	limit := lo.Limit // not positive: no limit, as Kubernetes' storage reads it
	var cont *continueToken
	var objs []*projections.Object
	var rv uint64
	snapshot := ""
	if c := lo.Continue; c != "" {
		t, err := decodeContinue(c)
		if err != nil {
			writeError(w, r, err)
			return
		}
		if opts.ResourceVersion != "" && opts.ResourceVersion != "0" {
			writeError(w, r, apierrors.NewBadRequest("specifying resource version is not allowed when using continue"))
			return
		}
		sn, ok := s.pages.get(t.ID)
		if !ok {
			writeError(w, r, apierrors.NewResourceExpired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter."))
			return
		}
		cont, objs, rv, snapshot = &t, sn.objs, sn.rv, t.ID
	} else {
		objs, rv, err = s.reg.List(r.Context(), info.kind, q, opts)
		if err != nil {
			writeError(w, r, err)
			return
		}
	}
	if cont != nil {
		i, _ := slices.BinarySearchFunc(objs, *cont, func(o *projections.Object, t continueToken) int {
			if c := strings.Compare(o.Key.Namespace, t.Namespace); c != 0 {
				return c
			}
			if c := strings.Compare(o.Key.Name, t.Name); c != 0 {
				return c
			}
			return 0
		})
		if i < len(objs) && objs[i].Key.Namespace == cont.Namespace && objs[i].Key.Name == cont.Name {
			i++
		}
		objs = objs[i:]
	}
	lm := metav1.ListMeta{ResourceVersion: strconv.FormatUint(rv, 10)}
	if limit > 0 && int64(len(objs)) > limit {
		last := objs[limit-1]
		rest := int64(len(objs)) - limit
		if snapshot == "" {
			snapshot = s.pages.put(objs[limit:], rv)
		}
		lm.Continue = encodeContinue(continueToken{ID: snapshot, RV: rv, Namespace: last.Key.Namespace, Name: last.Key.Name})
		lm.RemainingItemCount = &rest
		objs = objs[:limit]
	}
	switch out.as {
	case "Table":
		asOf, err := s.asOf(r, opts, named)
		if err != nil {
			writeError(w, r, err)
			return
		}
		t, err := s.table(r, info.kind, objs, lm, asOf)
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeObject(w, r, http.StatusOK, out, t)
	case "PartialObjectMetadataList":
		list := &metav1.PartialObjectMetadataList{ListMeta: lm}
		list.Kind, list.APIVersion = "PartialObjectMetadataList", "meta.k8s.io/v1"
		for _, o := range objs {
			obj, err := o.Decode()
			if err != nil {
				writeError(w, r, apierrors.NewInternalError(err))
				return
			}
			list.Items = append(list.Items, *partialMetadata(obj))
		}
		writeObject(w, r, http.StatusOK, out, list)
	case "":
		s.writeList(w, r, out, info.kind, lm, objs)
	default:
		writeError(w, r, notAcceptable(info))
	}
}

// partialMetadata is the PartialObjectMetadata of obj.
func partialMetadata(obj runtime.Object) *metav1.PartialObjectMetadata {
	p := &metav1.PartialObjectMetadata{}
	p.Kind, p.APIVersion = "PartialObjectMetadata", "meta.k8s.io/v1"
	// meta.Accessor returns the object itself (a *corev1.Pod is a metav1.Object), not its
	// *ObjectMeta: ask for the embedded metadata; an unstructured object's is a map.
	if a, ok := obj.(metav1.ObjectMetaAccessor); ok {
		if om, ok := a.GetObjectMeta().(*metav1.ObjectMeta); ok {
			p.ObjectMeta = *om.DeepCopy()
		}
	} else if u, ok := obj.(runtime.Unstructured); ok {
		if m, ok := u.UnstructuredContent()["metadata"].(map[string]any); ok {
			// A custom resource's metadata was validated as ObjectMeta when written.
			_ = runtime.DefaultUnstructuredConverter.FromUnstructured(m, &p.ObjectMeta)
		}
	}
	return p
}

// readBody reads a request body, at most the configured size (413 past it).
func (s *Server) readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, s.cfg.MaxRequestBody+1))
	if err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("reading the request body: %v", err))
	}
	if int64(len(b)) > s.cfg.MaxRequestBody {
		return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("limit is %d", s.cfg.MaxRequestBody))
	}
	return b, nil
}

// writeRequest builds the registry request of a write: who, which field manager, dry run.
func (s *Server) writeRequest(r *http.Request) (registry.Request, error) {
	q := r.URL.Query()
	u := userFrom(r.Context())
	req := registry.Request{Actor: actorOf(u)}
	req.Admit = func(ctx context.Context, obj, old runtime.Object) error {
		return s.rbac.CheckWrite(ctx, s.authz, u, obj, old)
	}
	for _, d := range q["dryRun"] {
		if d != metav1.DryRunAll {
			return req, apierrors.NewBadRequest(fmt.Sprintf("unsupported dryRun value %q (only All)", d))
		}
		req.DryRun = true
	}
	fm := q.Get("fieldManager")
	if len(fm) > 128 {
		return req, apierrors.NewBadRequest("fieldManager must be at most 128 characters")
	}
	for _, c := range fm {
		if c < ' ' || c > '~' {
			return req, apierrors.NewBadRequest("fieldManager must consist of printable characters")
		}
	}
	if fm == "" {
		fm = managerFromUserAgent(r.UserAgent())
	}
	req.FieldManager = fm
	return req, nil
}

// managerFromUserAgent is the field manager of a client that named none: its user agent up to
// the first "/", as Kubernetes does.
func managerFromUserAgent(ua string) string {
	if i := strings.IndexByte(ua, '/'); i >= 0 {
		ua = ua[:i]
	}
	if len(ua) > 128 {
		ua = ua[:128]
	}
	if ua == "" {
		return "unknown"
	}
	return ua
}

// setWarnings adds Kubernetes Warning headers.
func setWarnings(w http.ResponseWriter, warnings []string) {
	for _, msg := range warnings {
		w.Header().Add("Warning", fmt.Sprintf("299 - %s", strconv.Quote(msg)))
	}
}

// decodeObject reads the body of a create or update into an object of kind k.
func (s *Server) decodeObject(r *http.Request, k *kinds.Kind) (runtime.Object, []string, error) {
	strict, warn, err := fieldValidation(r)
	if err != nil {
		return nil, nil, err
	}
	body, err := s.readBody(r)
	if err != nil {
		return nil, nil, err
	}
	if len(body) == 0 {
		return nil, nil, apierrors.NewBadRequest("the request has no body")
	}
	obj, warnings, err := decodeBody(r, body, k.GroupVersionKind, k.New(), strict)
	if err != nil {
		return nil, nil, err
	}
	if !warn {
		warnings = nil
	}
	return obj, warnings, nil
}

func (s *Server) serveCreate(w http.ResponseWriter, r *http.Request, info requestInfo, out output) {
	k := info.kind
	obj, warnings, err := s.decodeObject(r, k)
	if err != nil {
		writeError(w, r, err)
		return
	}
	m, _ := meta.Accessor(obj) // decoded objects of the catalog have metadata
	if k.Namespaced {
		if m.GetNamespace() == "" {
			m.SetNamespace(info.namespace)
		} else if m.GetNamespace() != info.namespace {
			writeError(w, r, apierrors.NewBadRequest("the namespace of the provided object does not match the namespace sent on the request"))
			return
		}
		if info.namespace == "" {
			writeError(w, r, notFoundPath(r))
			return
		}
	}
	req, err := s.writeRequest(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	created, err := s.reg.Create(r.Context(), k, obj, req)
	if err != nil {
		writeError(w, r, err)
		return
	}
	setWarnings(w, warnings)
	writeObject(w, r, http.StatusCreated, out, created)
}

func (s *Server) serveUpdate(w http.ResponseWriter, r *http.Request, info requestInfo, out output) {
	k := info.kind
	obj, warnings, err := s.decodeObject(r, k)
	if err != nil {
		writeError(w, r, err)
		return
	}
	m, _ := meta.Accessor(obj) // decoded objects of the catalog have metadata
	if m.GetName() != info.name {
		writeError(w, r, apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", m.GetName(), info.name)))
		return
	}
	if k.Namespaced {
		if m.GetNamespace() == "" {
			m.SetNamespace(info.namespace)
		} else if m.GetNamespace() != info.namespace {
			writeError(w, r, apierrors.NewBadRequest("the namespace of the provided object does not match the namespace sent on the request"))
			return
		}
	}
	req, err := s.writeRequest(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	var updated runtime.Object
	switch info.subresource {
	case "status":
		updated, err = s.reg.UpdateStatus(r.Context(), k, obj, req)
	case "finalize":
		ns, ok := obj.(*corev1.Namespace)
		if !ok {
			writeError(w, r, apierrors.NewMethodNotSupported(k.GroupResource(), "update finalize"))
			return
		}
		updated, err = s.reg.Finalize(r.Context(), info.name, req, func(cur *corev1.Namespace) error {
			cur.Spec.Finalizers = ns.Spec.Finalizers
			cur.ResourceVersion = ns.ResourceVersion
			return nil
		})
	default:
		updated, err = s.reg.Update(r.Context(), k, obj, req)
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	setWarnings(w, warnings)
	writeObject(w, r, http.StatusOK, out, updated)
}

// deleteOptions reads DeleteOptions from the body, or else from the query.
func (s *Server) deleteOptions(r *http.Request) (metav1.DeleteOptions, error) {
	var opts metav1.DeleteOptions
	body, err := s.readBody(r)
	if err != nil {
		return opts, err
	}
	if len(strings.TrimSpace(string(body))) > 0 {
		obj, _, err := strictJSON.Decode(body, nil, &opts)
		if err != nil && !runtime.IsStrictDecodingError(err) {
			if pObj, _, perr := protoSerializer.Decode(body, nil, &opts); perr == nil {
				obj = pObj
			} else {
				return opts, apierrors.NewBadRequest(fmt.Sprintf("invalid DeleteOptions: %v", err))
			}
		}
		if d, ok := obj.(*metav1.DeleteOptions); ok {
			opts = *d
		}
	}
	q := r.URL.Query()
	if g := q.Get("gracePeriodSeconds"); g != "" {
		n, err := strconv.ParseInt(g, 10, 64)
		if err != nil {
			return opts, apierrors.NewBadRequest(fmt.Sprintf("invalid gracePeriodSeconds %q", g))
		}
		opts.GracePeriodSeconds = &n
	}
	if p := q.Get("propagationPolicy"); p != "" {
		pp := metav1.DeletionPropagation(p)
		opts.PropagationPolicy = &pp
	}
	if o := q.Get("orphanDependents"); o != "" {
		b := isTrue(o)
		opts.OrphanDependents = &b
	}
	opts.DryRun = append(opts.DryRun, q["dryRun"]...)
	if p := opts.PropagationPolicy; p != nil {
		switch *p {
		case metav1.DeletePropagationBackground, metav1.DeletePropagationForeground, metav1.DeletePropagationOrphan:
		default:
			return opts, apierrors.NewInvalid(metav1.SchemeGroupVersion.WithKind("DeleteOptions").GroupKind(), "", nil)
		}
		if opts.OrphanDependents != nil {
			return opts, apierrors.NewBadRequest("orphanDependents and propagationPolicy cannot both be set")
		}
	}
	for _, d := range opts.DryRun {
		if d != metav1.DryRunAll {
			return opts, apierrors.NewBadRequest(fmt.Sprintf("unsupported dryRun value %q (only All)", d))
		}
	}
	if opts.GracePeriodSeconds != nil && *opts.GracePeriodSeconds < 0 {
		z := int64(0)
		opts.GracePeriodSeconds = &z
	}
	return opts, nil
}

func (s *Server) serveDelete(w http.ResponseWriter, r *http.Request, info requestInfo, out output) {
	opts, err := s.deleteOptions(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	req, err := s.writeRequest(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	req.DryRun = req.DryRun || len(opts.DryRun) > 0
	obj, gone, err := s.reg.Delete(r.Context(), info.kind, info.namespace, info.name, opts, req)
	if err != nil {
		writeError(w, r, err)
		return
	}
	code := http.StatusOK
	if !gone && opts.OrphanDependents != nil && !*opts.OrphanDependents {
		code = http.StatusAccepted
	}
	if gone && !info.kind.Strategy.ReturnDeletedObject {
		m, _ := meta.Accessor(obj)
		st := &metav1.Status{Status: metav1.StatusSuccess, Details: &metav1.StatusDetails{
			Name: info.name, Group: info.kind.Group, Kind: info.kind.Resource, UID: m.GetUID()}}
		st.Kind, st.APIVersion = "Status", "v1"
		writeObject(w, r, code, out, st)
		return
	}
	writeObject(w, r, code, out, obj)
}

func (s *Server) serveDeleteCollection(w http.ResponseWriter, r *http.Request, info requestInfo, out output) {
	lo, err := listOptions(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	q, err := listQuery(info, lo)
	if err != nil {
		writeError(w, r, err)
		return
	}
	opts, err := s.deleteOptions(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	req, err := s.writeRequest(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	req.DryRun = req.DryRun || len(opts.DryRun) > 0
	objs, _, err := s.reg.List(r.Context(), info.kind, q, registry.ReadOptions{})
	if err != nil {
		writeError(w, r, err)
		return
	}
	list := info.kind.NewList()
	var items []runtime.Object
	for _, o := range objs {
		obj, _, err := s.reg.Delete(r.Context(), info.kind, o.Key.Namespace, o.Key.Name, opts, req)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			writeError(w, r, err)
			return
		}
		items = append(items, obj)
	}
	if err := meta.SetList(list, items); err != nil {
		writeError(w, r, apierrors.NewInternalError(err))
		return
	}
	writeObject(w, r, http.StatusOK, out, list)
}

// serveBinding assigns a pod to a node: POST pods/<name>/binding with a Binding.
func (s *Server) serveBinding(w http.ResponseWriter, r *http.Request, info requestInfo) {
	if info.verb != "create" {
		writeError(w, r, apierrors.NewMethodNotSupported(info.kind.GroupResource(), info.verb+" binding"))
		return
	}
	obj, _, err := s.decodeObjectAs(r, corev1.SchemeGroupVersion.WithKind("Binding"), &corev1.Binding{})
	if err != nil {
		writeError(w, r, err)
		return
	}
	req, err := s.writeRequest(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if _, err := s.reg.Bind(r.Context(), info.namespace, info.name, obj.(*corev1.Binding), req); err != nil {
		writeError(w, r, err)
		return
	}
	writeSuccess(w, r, http.StatusCreated)
}

// serveEviction deletes a pod through the eviction subresource (no disruption budgets yet).
func (s *Server) serveEviction(w http.ResponseWriter, r *http.Request, info requestInfo) {
	if info.verb != "create" {
		writeError(w, r, apierrors.NewMethodNotSupported(info.kind.GroupResource(), info.verb+" eviction"))
		return
	}
	obj, _, err := s.decodeObjectAs(r, policyv1.SchemeGroupVersion.WithKind("Eviction"), &policyv1.Eviction{})
	if err != nil {
		// policy/v1beta1 evictions carry the same fields.
		writeError(w, r, err)
		return
	}
	req, err := s.writeRequest(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if _, err := s.reg.Evict(r.Context(), info.namespace, info.name, obj.(*policyv1.Eviction), req); err != nil {
		writeError(w, r, err)
		return
	}
	writeSuccess(w, r, http.StatusCreated)
}

func (s *Server) decodeObjectAs(r *http.Request, gvk schemaGVK, into runtime.Object) (runtime.Object, []string, error) {
	strict, _, err := fieldValidation(r)
	if err != nil {
		return nil, nil, err
	}
	body, err := s.readBody(r)
	if err != nil {
		return nil, nil, err
	}
	return decodeBody(r, body, gvk, into, strict)
}

func writeSuccess(w http.ResponseWriter, r *http.Request, code int) {
	st := &metav1.Status{Status: metav1.StatusSuccess, Code: int32(code)}
	st.Kind, st.APIVersion = "Status", "v1"
	writeObject(w, r, code, negotiateOr(r), st)
}

func (s *Server) catalogResourceless() schemaGR { return schemaGR{} }
