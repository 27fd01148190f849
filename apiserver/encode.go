package apiserver

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/printers"
	"github.com/logplane/logplane/projections"
)

// protoMagic starts every Kubernetes protobuf message.
var protoMagic = []byte("k8s\x00")

// encoded holds the wire forms of one revision of an object, made once and shared by every
// list and watch that sends it.
type encoded struct {
	src  *projections.Object
	rv   uint64      // the resourceVersion to put in the object: src.Seq, or a tombstone's sequence
	kind *kinds.Kind // the kind it is sent as: src.Kind, or a kind served by conversion from it

	jsonOnce sync.Once
	json     []byte // the object as JSON, with apiVersion and kind
	jsonErr  error

	protoOnce sync.Once
	proto     []byte // the object's protobuf message, without the Unknown envelope
	protoErr  error

	framesMu sync.Mutex
	frames   map[frameKey][]byte    // whole watch events, framed, shared by every watcher
	views    map[schemaGVK]*encoded // the same revision sent as kinds served by conversion
}

// frameKey names one framed watch event: its type and wire format.
type frameKey struct {
	typ   string
	proto bool
}

// frame returns the watch event of type typ about this revision, framed for the wire (JSON:
// one line; protobuf: length-prefixed), made once for every watcher that sends it.
func (e *encoded) frame(typ string, proto bool, kind *kinds.Kind) ([]byte, error) {
	k := frameKey{typ, proto}
	e.framesMu.Lock()
	defer e.framesMu.Unlock()
	if b, ok := e.frames[k]; ok {
		return b, nil
	}
	var obj []byte
	var err error
	if proto {
		var raw []byte
		if raw, err = e.Proto(); err == nil {
			obj, err = envelope(kind.GroupVersion().String(), kind.Kind, raw)
		}
	} else {
		obj, err = e.JSON()
	}
	if err != nil {
		return nil, err
	}
	b, err := watchEvent(typ, obj, proto)
	if err != nil {
		return nil, err
	}
	if e.frames == nil {
		e.frames = map[frameKey][]byte{}
	}
	e.frames[k] = b
	return b, nil
}

// watchEvent frames one watch event of type typ about obj (the object encoded for the stream:
// JSON, or protobuf in its Unknown envelope) as Kubernetes' watch server frames them: a JSON
// line {"type":...,"object":...}, or a metav1.WatchEvent prefixed by its length. Every watch
// event the server sends is framed here.
func watchEvent(typ string, obj []byte, proto bool) ([]byte, error) {
	if proto {
		ev := metav1.WatchEvent{Type: typ, Object: runtime.RawExtension{Raw: obj}}
		b := make([]byte, 4, 4+ev.Size())
		n, err := ev.MarshalToSizedBuffer(b[4:cap(b)])
		if err != nil {
			return nil, err
		}
		binary.BigEndian.PutUint32(b, uint32(n))
		return b[:4+n], nil
	}
	b := make([]byte, 0, len(obj)+len(typ)+22)
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	b = append(b, `","object":`...)
	b = append(b, obj...)
	return append(b, "}\n"...), nil
}

func newEncoded(o *projections.Object, rv uint64) *encoded {
	return &encoded{src: o, rv: rv, kind: o.Kind}
}

// as returns the encodings of the same revision sent as kind k: e itself, or, for a kind served
// by conversion from e's (events.k8s.io/v1 Events of core Events), one made once and shared.
func (e *encoded) as(k *kinds.Kind) *encoded {
	if e.kind == nil || k.GroupVersionKind == e.kind.GroupVersionKind {
		return e
	}
	e.framesMu.Lock()
	defer e.framesMu.Unlock()
	if v, ok := e.views[k.GroupVersionKind]; ok {
		return v
	}
	v := &encoded{src: e.src, rv: e.rv, kind: k}
	if e.views == nil {
		e.views = map[schemaGVK]*encoded{}
	}
	e.views[k.GroupVersionKind] = v
	return v
}

func (e *encoded) decode() (runtime.Object, error) {
	if e.kind == nil {
		return nil, fmt.Errorf("apiserver: %s is of an unknown kind", e.src.Key)
	}
	obj, err := e.kind.Decode(e.src.Event.GetEncoding(), e.src.Event.GetObject())
	if err != nil {
		return nil, err
	}
	setResourceVersion(obj, e.rv)
	return obj, nil
}

// JSON returns the object's JSON.
func (e *encoded) JSON() ([]byte, error) {
	e.jsonOnce.Do(func() {
		obj, err := e.decode()
		if err != nil {
			e.jsonErr = err
			return
		}
		var buf bytes.Buffer
		if err := jsonSerializer.Encode(obj, &buf); err != nil {
			e.jsonErr = err
			return
		}
		e.json = bytes.TrimRight(buf.Bytes(), "\n")
	})
	return e.json, e.jsonErr
}

// Proto returns the object's protobuf message (the raw bytes of the typed struct).
func (e *encoded) Proto() ([]byte, error) {
	e.protoOnce.Do(func() {
		obj, err := e.decode()
		if err != nil {
			e.protoErr = err
			return
		}
		pm, ok := obj.(interface{ Marshal() ([]byte, error) })
		if !ok {
			e.protoErr = fmt.Errorf("apiserver: %T has no protobuf form", obj)
			return
		}
		e.proto, e.protoErr = pm.Marshal()
	})
	return e.proto, e.protoErr
}

// envelope wraps a raw protobuf message of the given type in the Kubernetes Unknown envelope.
func envelope(apiVersion, kind string, raw []byte) ([]byte, error) {
	return envelopeParts(apiVersion, kind, len(raw), func(b []byte) []byte { return append(b, raw...) }), nil
}

// envelopeParts builds the envelope of a raw message of size n that fill appends.
func envelopeParts(apiVersion, kind string, n int, fill func([]byte) []byte) []byte {
	tmSize := protowire.SizeTag(1) + protowire.SizeBytes(len(apiVersion)) + protowire.SizeTag(2) + protowire.SizeBytes(len(kind))
	size := len(protoMagic) + protowire.SizeTag(1) + protowire.SizeBytes(tmSize) + protowire.SizeTag(2) + protowire.SizeBytes(n)
	b := make([]byte, 0, size)
	b = append(b, protoMagic...)
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(tmSize))
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, apiVersion)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, kind)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(n))
	return fill(b)
}

// encodingCache keeps the encodings of the current revision of each object.
type encodingCache struct {
	mu sync.Mutex
	m  map[eventlog.Key]*encoded
}

func newEncodingCache() *encodingCache { return &encodingCache{m: map[eventlog.Key]*encoded{}} }

// get returns the encodings of o, a revision from the projection.
func (c *encodingCache) get(o *projections.Object) *encoded {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[o.Key]; ok && e.src.Seq == o.Seq {
		return e
	} else if ok && e.src.Seq > o.Seq {
		return newEncoded(o, o.Seq) // an older revision than the cached one: do not cache it
	}
	e := newEncoded(o, o.Seq)
	c.m[o.Key] = e
	return e
}

// forget drops the cached encodings of a key that changed.
func (c *encodingCache) forget(key eventlog.Key) {
	c.mu.Lock()
	delete(c.m, key)
	c.mu.Unlock()
}

// sweep drops, now and then, entries that a racing read put back after their key changed.
func (c *encodingCache) sweep(ctx context.Context, store *projections.Store) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.mu.Lock()
		for key, e := range c.m {
			if o, ok := store.Get(key); !ok || o.Seq != e.src.Seq {
				delete(c.m, key)
			}
		}
		c.mu.Unlock()
	}
}

// encodedOf returns the encodings of o: cached when o is a live revision of the projection.
func (s *Server) encodedOf(o *projections.Object) *encoded {
	if cur, ok := s.store.Get(o.Key); ok && cur == o {
		return s.encCache.get(o)
	}
	return newEncoded(o, o.Seq)
}

// encodedAs returns the encodings of o sent as kind k (see encoded.as).
func (s *Server) encodedAs(o *projections.Object, k *kinds.Kind) *encoded {
	return s.encodedOf(o).as(k)
}

// writeStored sends one stored object as kind k.
func (s *Server) writeStored(w http.ResponseWriter, r *http.Request, code int, out output, k *kinds.Kind, o *projections.Object) {
	e := s.encodedAs(o, k)
	var body []byte
	var err error
	switch {
	case out.media == mediaProtobuf:
		var raw []byte
		raw, err = e.Proto()
		if err == nil {
			body, err = envelope(k.GroupVersion().String(), k.Kind, raw)
		}
	case out.media == mediaYAML:
		body, err = e.JSON()
		if err == nil {
			body, err = yaml.JSONToYAML(body)
		}
	case out.pretty:
		body, err = e.JSON()
		if err == nil {
			var buf bytes.Buffer
			err = json.Indent(&buf, body, "", "  ")
			body = append(buf.Bytes(), '\n')
		}
	default:
		body, err = e.JSON()
	}
	if err != nil {
		writeError(w, r, apierrors.NewInternalError(err))
		return
	}
	w.Header().Set("Content-Type", out.contentType())
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body) // a client that left gets nothing more
	}
}

// writeList sends a list of stored objects of kind k, assembled from the cached encodings.
func (s *Server) writeList(w http.ResponseWriter, r *http.Request, out output, k *kinds.Kind, lm metav1.ListMeta, objs []*projections.Object) {
	var body []byte
	var err error
	switch out.media {
	case mediaProtobuf:
		body, err = s.protoList(k, lm, objs)
	default:
		body, err = s.jsonList(k, lm, objs)
		if err == nil && out.media == mediaYAML {
			body, err = yaml.JSONToYAML(body)
		} else if err == nil && out.pretty {
			var buf bytes.Buffer
			err = json.Indent(&buf, body, "", "  ")
			body = append(buf.Bytes(), '\n')
		}
	}
	if err != nil {
		writeError(w, r, apierrors.NewInternalError(err))
		return
	}
	w.Header().Set("Content-Type", out.contentType())
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body) // a client that left gets nothing more
	}
}

func (s *Server) jsonList(k *kinds.Kind, lm metav1.ListMeta, objs []*projections.Object) ([]byte, error) {
	meta, err := json.Marshal(lm)
	if err != nil {
		return nil, err
	}
	items := make([][]byte, len(objs))
	size := 128 + len(meta)
	for i, o := range objs {
		b, err := s.encodedAs(o, k).JSON()
		if err != nil {
			return nil, err
		}
		items[i] = b
		size += len(b) + 1
	}
	buf := make([]byte, 0, size)
	buf = append(buf, `{"kind":"`...)
	buf = append(buf, k.Kind...)
	buf = append(buf, `List","apiVersion":"`...)
	buf = append(buf, k.GroupVersion().String()...)
	buf = append(buf, `","metadata":`...)
	buf = append(buf, meta...)
	buf = append(buf, `,"items":[`...)
	for i, b := range items {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, b...)
	}
	buf = append(buf, "]}\n"...)
	return buf, nil
}

func (s *Server) protoList(k *kinds.Kind, lm metav1.ListMeta, objs []*projections.Object) ([]byte, error) {
	metaBytes, err := lm.Marshal()
	if err != nil {
		return nil, err
	}
	items := make([][]byte, len(objs))
	n := protowire.SizeTag(1) + protowire.SizeBytes(len(metaBytes))
	for i, o := range objs {
		b, err := s.encodedAs(o, k).Proto()
		if err != nil {
			return nil, err
		}
		items[i] = b
		n += protowire.SizeTag(2) + protowire.SizeBytes(len(b))
	}
	return envelopeParts(k.GroupVersion().String(), k.Kind+"List", n, func(raw []byte) []byte {
		raw = protowire.AppendTag(raw, 1, protowire.BytesType)
		raw = protowire.AppendBytes(raw, metaBytes)
		for _, b := range items {
			raw = protowire.AppendTag(raw, 2, protowire.BytesType)
			raw = protowire.AppendBytes(raw, b)
		}
		return raw
	}), nil
}

// table renders objects of kind k as a meta.k8s.io/v1 Table, embedding in each row what
// includeObject asks for (None, Metadata: the default, or Object).
// table renders objs as the Table of kind k; ages are measured from asOf (a read in the past),
// or from now if it is zero.
func (s *Server) table(r *http.Request, k *kinds.Kind, objs []*projections.Object, lm metav1.ListMeta, asOf time.Time) (*metav1.Table, error) {
	include := metav1.IncludeObjectPolicy(r.URL.Query().Get("includeObject"))
	switch include {
	case "":
		include = metav1.IncludeMetadata
	case metav1.IncludeNone, metav1.IncludeMetadata, metav1.IncludeObject:
	default:
		return nil, apierrors.NewBadRequest(fmt.Sprintf("includeObject must be None, Metadata or Object, not %q", include))
	}
	t := &metav1.Table{ListMeta: lm, ColumnDefinitions: printers.Columns(k)}
	t.Kind, t.APIVersion = "Table", "meta.k8s.io/v1"
	t.Rows = make([]metav1.TableRow, 0, len(objs))
	var p printers.Printer
	if !asOf.IsZero() {
		p.Now = func() time.Time { return asOf }
	}
	for _, o := range objs {
		obj, err := s.encodedAs(o, k).decode()
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		row, err := s.tableRow(p, k, obj, include)
		if err != nil {
			return nil, err
		}
		t.Rows = append(t.Rows, row)
	}
	return t, nil
}

func (s *Server) tableRow(p printers.Printer, k *kinds.Kind, obj runtime.Object, include metav1.IncludeObjectPolicy) (metav1.TableRow, error) {
	row, err := p.Row(k, obj)
	if err != nil {
		return row, apierrors.NewInternalError(err)
	}
	switch include {
	case metav1.IncludeMetadata:
		row.Object = runtime.RawExtension{Object: partialMetadata(obj)}
	case metav1.IncludeObject:
		row.Object = runtime.RawExtension{Object: obj}
	}
	return row, nil
}

func setResourceVersion(obj runtime.Object, rv uint64) {
	if m, ok := obj.(metav1.ObjectMetaAccessor); ok {
		m.GetObjectMeta().SetResourceVersion(strconv.FormatUint(rv, 10))
	}
}
