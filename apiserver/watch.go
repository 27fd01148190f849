package apiserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/printers"
	"github.com/logplane/logplane/projections"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
	"github.com/logplane/logplane/registry"
)

// hub is the watch fan-out: it takes every change the projection applies (the projection is
// the one follower of the log) and keeps the recent ones in memory, where every watcher reads
// them. A watcher that needs older events reads them from the log, then joins the hub.
type hub struct {
	s    *Server
	size int

	mu      sync.RWMutex
	base    uint64      // the hub holds every change with a sequence above base
	entries []*hubEntry // in sequence order
	notify  chan struct{}
}

// hubEntry is one change, as every watcher sees it.
type hubEntry struct {
	seq uint64
	typ eventv1.ChangeType
	gr  schema.GroupResource
	cur *projections.Object // the new revision; for a deletion, the last one
	old *projections.Object // the revision replaced, nil if added
	enc *encoded
}

func newHub(s *Server, size int) *hub {
	return &hub{s: s, size: size, notify: make(chan struct{})}
}

func (h *hub) start(ctx context.Context) {
	cancel := h.s.store.Subscribe(h.add)
	applied := h.s.store.Applied()
	h.mu.Lock()
	h.base = applied
	i := sort.Search(len(h.entries), func(i int) bool { return h.entries[i].seq > applied })
	h.entries = append([]*hubEntry(nil), h.entries[i:]...)
	h.mu.Unlock()
	go func() {
		<-ctx.Done()
		cancel()
	}()
}

// add is the projection's subscriber: quick, and never blocking.
func (h *hub) add(ch projections.Change) {
	e := &hubEntry{seq: ch.Seq, typ: ch.Type, old: ch.Old, cur: ch.New}
	if ch.Type == eventv1.ChangeType_CHANGE_TYPE_DELETED {
		e.cur, e.old = ch.Old, nil
	}
	if e.cur == nil || e.cur.Kind == nil {
		return // a deletion of something never seen, or a kind this server does not serve
	}
	e.gr = schema.GroupResource{Group: e.cur.Key.Group, Resource: e.cur.Key.Resource}
	if ch.Type == eventv1.ChangeType_CHANGE_TYPE_DELETED {
		h.s.encCache.forget(e.cur.Key)
		e.enc = newEncoded(e.cur, ch.Seq)
	} else {
		e.enc = h.s.encCache.get(e.cur)
	}
	h.mu.Lock()
	if ch.Seq <= h.base {
		h.mu.Unlock()
		return
	}
	h.entries = append(h.entries, e)
	if len(h.entries) > h.size {
		half := len(h.entries) / 2
		h.base = h.entries[half-1].seq
		h.entries = append([]*hubEntry(nil), h.entries[half:]...)
	}
	close(h.notify)
	h.notify = make(chan struct{})
	h.mu.Unlock()
}

// after returns up to max entries after pos; or, when the hub no longer holds everything after
// pos, fromLog with the base up to which the log must be read; or nothing and a channel closed
// when something new arrives.
func (h *hub) after(pos uint64, max int) (batch []*hubEntry, fromLog bool, base uint64, wait <-chan struct{}) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if pos < h.base {
		return nil, true, h.base, nil
	}
	i := sort.Search(len(h.entries), func(i int) bool { return h.entries[i].seq > pos })
	j := min(i+max, len(h.entries))
	if i == j {
		return nil, false, 0, h.notify
	}
	return h.entries[i:j:j], false, 0, nil
}

// position is the sequence up to which the hub has every change.
func (h *hub) position() uint64 {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if n := len(h.entries); n > 0 {
		return h.entries[n-1].seq
	}
	return h.base
}

// watchParams are a watch request's options.
type watchParams struct {
	rv             string
	sendInitial    bool
	initialEndMark bool // send the initial-events-end bookmark (sendInitialEvents=true)
	bookmarks      bool
	timeout        time.Duration
}

// readWatchParams reads a watch's options from what listOptions read (and validated).
func readWatchParams(opts metainternalversion.ListOptions) watchParams {
	p := watchParams{rv: opts.ResourceVersion, bookmarks: opts.AllowWatchBookmarks, timeout: 30 * time.Minute}
	if opts.SendInitialEvents != nil {
		// ValidateListOptions made sure resourceVersionMatch is NotOlderThan.
		p.sendInitial = *opts.SendInitialEvents
		p.initialEndMark = p.sendInitial
	} else {
		p.sendInitial = p.rv == "" || p.rv == "0"
	}
	if t := opts.TimeoutSeconds; t != nil && *t != 0 {
		// A negative timeout ends the watch at once, as kube-apiserver's context does.
		p.timeout = time.Duration(*t) * time.Second
	}
	return p
}

func (s *Server) serveWatch(w http.ResponseWriter, r *http.Request, info requestInfo, out output) {
	k := info.kind
	if r.Header.Get(AtHeader) != "" {
		writeError(w, r, apierrors.NewBadRequest("a watch cannot be read in the past: "+AtHeader+" is for get and list"))
		return
	}
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
	p := readWatchParams(lo)
	if out.as != "" && out.as != "Table" {
		writeError(w, r, notAcceptable(info))
		return
	}
	if p.timeout < 0 {
		// A negative timeoutSeconds: kube-apiserver's watch timer fires before the first event.
		ww, err := s.newWatchWriter(w, r, out, k)
		if err != nil {
			writeError(w, r, err)
			return
		}
		ww.flush()
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), p.timeout)
	defer cancel()

	var pos uint64
	var initial []*projections.Object
	if p.sendInitial {
		opts := registry.ReadOptions{ResourceVersion: p.rv}
		if p.rv != "" && p.rv != "0" {
			opts.ResourceVersionMatch = metav1.ResourceVersionMatchNotOlderThan
		}
		initial, pos, err = s.reg.List(ctx, k, q, opts)
		if err != nil {
			writeError(w, r, err)
			return
		}
	} else {
		pos, err = registry.ParseResourceVersion(p.rv)
		if err != nil {
			writeError(w, r, err)
			return
		}
		first, _, err := s.log.Bounds(ctx)
		if err != nil {
			writeError(w, r, apierrors.NewServiceUnavailable(err.Error()))
			return
		}
		if pos+1 < first {
			writeError(w, r, apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %d (%d)", pos, first-1)))
			return
		}
		if pos > s.hub.position() {
			if err := s.waitHub(ctx, pos); err != nil {
				writeError(w, r, err)
				return
			}
		}
	}

	ww, err := s.newWatchWriter(w, r, out, k)
	if err != nil {
		writeError(w, r, err)
		return
	}
	s.metrics.watchers.Inc()
	s.watching.Add(1)
	defer func() {
		s.metrics.watchers.Dec()
		s.watching.Add(-1)
	}()
	for _, o := range initial {
		if err := ww.send(watch.Added, s.encodedAs(o, k)); err != nil {
			return
		}
	}
	if p.initialEndMark {
		if err := ww.bookmark(pos, true); err != nil {
			return
		}
	}
	ww.flush()

	bookmarks := time.NewTicker(s.cfg.BookmarkInterval)
	defer bookmarks.Stop()
	gr := k.Stored().GroupResource() // the resource whose changes the watch sees
	for {
		batch, fromLog, base, wait := s.hub.after(pos, 512)
		if fromLog {
			r := replay{s: s, k: k, q: q, from: pos, prev: map[eventlog.Key]*projections.Object{}}
			err := s.reg.ScanFiltered(ctx, eventlog.Filter{Group: gr.Group, Resource: gr.Resource, Namespace: q.Namespace}, pos, base, func(rec eventlog.Record) error {
				pos = rec.Seq
				if rec.Err != nil {
					return nil
				}
				key := eventlog.KeyOf(rec.Event)
				if key.Group != gr.Group || key.Resource != gr.Resource {
					return nil
				}
				e, err := r.entry(ctx, key, rec)
				if err != nil {
					return err
				}
				typ, ok := e.eventFor(q)
				if !ok {
					return nil
				}
				return ww.send(typ, e.enc.as(k))
			})
			if err != nil {
				if ctx.Err() == nil && !errors.Is(err, errClientGone) {
					ww.sendError(err)
				}
				return
			}
			pos = max(pos, base)
			ww.flush()
			continue
		}
		for _, e := range batch {
			pos = e.seq
			if e.gr != gr {
				continue
			}
			typ, ok := e.eventFor(q)
			if !ok {
				continue
			}
			if err := ww.send(typ, e.enc.as(k)); err != nil {
				return
			}
		}
		if len(batch) > 0 {
			ww.flush()
			continue
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return
		case <-s.stopping:
			return
		case <-bookmarks.C:
			if p.bookmarks {
				if err := ww.bookmark(pos, false); err != nil {
					return
				}
				ww.flush()
			}
		}
	}
}

// replay turns log records into hub entries for a watcher reading the log, with the revision
// each one replaced, so that selectors see objects start and stop matching as they do on the hub.
type replay struct {
	s    *Server
	k    *kinds.Kind
	q    registry.Query
	from uint64
	prev map[eventlog.Key]*projections.Object // the last revision of each key seen so far
}

func (r *replay) entry(ctx context.Context, key eventlog.Key, rec eventlog.Record) (*hubEntry, error) {
	o := registry.ObjectOf(r.k, rec)
	e := &hubEntry{seq: rec.Seq, typ: rec.Event.GetType(), cur: o, enc: newEncoded(o, rec.Seq)}
	if e.typ == eventv1.ChangeType_CHANGE_TYPE_MODIFIED {
		old, seen := r.prev[key]
		if !seen && r.selective() {
			// The revision current when the watch started.
			if at, err := r.s.reg.At(ctx, key, r.from); err == nil {
				old = registry.ObjectOf(r.k, at)
			} else if !errors.Is(err, eventlog.ErrNotFound) {
				return nil, err
			}
		}
		e.old = old
		if old == nil && !r.selective() {
			e.old = o // no selector: what matters is only that it is a modification
		}
	}
	if e.typ == eventv1.ChangeType_CHANGE_TYPE_DELETED {
		delete(r.prev, key)
	} else {
		r.prev[key] = o
	}
	return e, nil
}

func (r *replay) selective() bool {
	return (r.q.Labels != nil && !r.q.Labels.Empty()) || (r.q.Fields != nil && !r.q.Fields.Empty())
}

// waitHub waits for the hub to reach pos, at most the registry's read timeout.
func (s *Server) waitHub(ctx context.Context, pos uint64) error {
	deadline := time.Now().Add(3 * time.Second)
	for s.hub.position() < pos {
		if time.Now().After(deadline) {
			return registry.TooLargeResourceVersion(pos, s.hub.position())
		}
		_, _, _, wait := s.hub.after(s.hub.position(), 1)
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-wait:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return apierrors.NewTimeoutError(ctx.Err().Error(), 1)
		}
		t.Stop()
	}
	return nil
}

func matches(o *projections.Object, q registry.Query) bool {
	if o == nil {
		return false
	}
	if q.Namespace != "" && o.Key.Namespace != q.Namespace {
		return false
	}
	if q.Labels != nil && !q.Labels.Empty() && !q.Labels.Matches(o.Labels) {
		return false
	}
	if q.Fields != nil && !q.Fields.Empty() && !q.Fields.Matches(o.Fields) {
		return false
	}
	return true
}

// eventFor is the watch event a watcher with query q sees for e: an object that starts to match
// is ADDED, one that stops matching is DELETED.
func (e *hubEntry) eventFor(q registry.Query) (watch.EventType, bool) {
	now := matches(e.cur, q)
	switch e.typ {
	case eventv1.ChangeType_CHANGE_TYPE_ADDED:
		return watch.Added, now
	case eventv1.ChangeType_CHANGE_TYPE_DELETED:
		return watch.Deleted, now
	}
	was := matches(e.old, q)
	switch {
	case now && was:
		return watch.Modified, true
	case now:
		return watch.Added, true
	case was:
		return watch.Deleted, true
	}
	return "", false
}

// errClientGone is returned when writing to a watcher fails.
var errClientGone = errors.New("apiserver: the watcher is gone")

// watchWriter writes watch events in the format the client asked for.
type watchWriter struct {
	s       *Server
	r       *http.Request
	w       io.Writer
	flusher http.Flusher
	out     output
	k       *kinds.Kind
}

func (s *Server) newWatchWriter(w http.ResponseWriter, r *http.Request, out output, k *kinds.Kind) (*watchWriter, error) {
	f, ok := w.(http.Flusher)
	if !ok {
		return nil, apierrors.NewInternalError(errors.New("the connection cannot stream"))
	}
	if out.media == mediaYAML {
		out.media = mediaJSON // watches stream JSON or protobuf
	}
	ct := mediaJSON
	if out.media == mediaProtobuf {
		ct = mediaProtobufWatch
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Cache-Control", "no-cache, private")
	w.WriteHeader(http.StatusOK)
	f.Flush()
	return &watchWriter{s: s, r: r, w: w, flusher: f, out: out, k: k}, nil
}

func (ww *watchWriter) flush() { ww.flusher.Flush() }

// send writes one event about the object e encodes.
func (ww *watchWriter) send(typ watch.EventType, e *encoded) error {
	if ww.out.as == "Table" {
		obj, err := e.decode()
		if err != nil {
			return ww.fail(err)
		}
		t := &metav1.Table{ColumnDefinitions: nil, ListMeta: metav1.ListMeta{ResourceVersion: strconv.FormatUint(e.rv, 10)}}
		t.Kind, t.APIVersion = "Table", "meta.k8s.io/v1"
		t.ColumnDefinitions = printers.Columns(ww.k)
		include := metav1.IncludeObjectPolicy(ww.r.URL.Query().Get("includeObject"))
		if include == "" {
			include = metav1.IncludeMetadata
		}
		row, err := ww.s.tableRow(printers.Printer{}, ww.k, obj, include)
		if err != nil {
			return ww.fail(err)
		}
		t.Rows = []metav1.TableRow{row}
		return ww.sendObject(typ, t)
	}
	b, err := e.frame(string(typ), ww.out.media == mediaProtobuf, ww.k)
	if err != nil {
		return ww.fail(err)
	}
	if _, err := ww.w.Write(b); err != nil {
		return errClientGone
	}
	return nil
}

func (ww *watchWriter) fail(err error) error {
	ww.sendError(apierrors.NewInternalError(err))
	return errClientGone
}

// sendObject encodes obj (a Table, a Status, a bookmark) and writes it as an event.
func (ww *watchWriter) sendObject(typ watch.EventType, obj runtime.Object) error {
	var b bytes.Buffer
	proto := ww.out.media == mediaProtobuf
	enc := runtime.Encoder(jsonSerializer)
	if proto {
		enc = protoSerializer
	}
	if err := enc.Encode(obj, &b); err != nil {
		return errClientGone
	}
	body := b.Bytes()
	if !proto {
		body = bytes.TrimRight(body, "\n")
	}
	ev, err := watchEvent(string(typ), body, proto)
	if err != nil {
		return errClientGone
	}
	if _, err := ww.w.Write(ev); err != nil {
		return errClientGone
	}
	return nil
}

// bookmark tells the client it has seen everything up to rv.
func (ww *watchWriter) bookmark(rv uint64, initialEnd bool) error {
	if ww.out.as == "Table" {
		t := &metav1.Table{ListMeta: metav1.ListMeta{ResourceVersion: strconv.FormatUint(rv, 10)}}
		t.Kind, t.APIVersion = "Table", "meta.k8s.io/v1"
		return ww.sendObject(watch.Bookmark, t)
	}
	obj := ww.k.New()
	setResourceVersion(obj, rv)
	if initialEnd {
		if m, ok := obj.(metav1.ObjectMetaAccessor); ok {
			m.GetObjectMeta().SetAnnotations(map[string]string{metav1.InitialEventsAnnotationKey: "true"})
		}
	}
	return ww.sendObject(watch.Bookmark, obj)
}

// sendError ends a watch with an ERROR event carrying a Status.
func (ww *watchWriter) sendError(err error) {
	if errors.Is(err, eventlog.ErrGone) {
		err = apierrors.NewResourceExpired(err.Error())
	}
	_ = ww.sendObject(watch.Error, registry.StatusOf(err)) // the watch ends either way
	ww.flush()
}
