package registry

import (
	"context"
	"fmt"
	"strconv"

	"google.golang.org/protobuf/types/known/timestamppb"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/projections"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// current is the revision of an object a write starts from.
type current struct {
	seq uint64
	obj runtime.Object // decoded, resourceVersion set; the caller may change a copy only
	raw []byte         // the encoded object as stored
}

// newEvent builds the envelope of obj, an object of kind k, encoded as the kind it is stored as
// and without its resourceVersion.
func (r *Registry) newEvent(k *kinds.Kind, obj runtime.Object, typ eventv1.ChangeType, reason string, req Request) (*eventv1.ObjectChanged, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, fmt.Errorf("registry: %T has no metadata: %w", obj, err)
	}
	rv := m.GetResourceVersion()
	m.SetResourceVersion("")
	stored := k.ToStored(obj)
	k = k.Stored()
	data, err := kinds.Encode(stored, k.Encoding())
	m.SetResourceVersion(rv)
	if err != nil {
		return nil, fmt.Errorf("registry: encoding %s %s: %w", k.Kind, m.GetName(), err)
	}
	ev := &eventv1.ObjectChanged{
		Type:   typ,
		Reason: reason,
		Actor:  req.Actor.proto(),
		Cause:  req.Cause,
		Time:   timestamppb.New(r.now()),
		Ref: &eventv1.ObjectRef{
			Group: k.Group, Version: k.Version, Kind: k.Kind, Resource: k.Resource,
			Namespace: m.GetNamespace(), Name: m.GetName(), Uid: string(m.GetUID()),
		},
		Encoding: k.Encoding(),
		Object:   data,
		Labels:   m.GetLabels(),
		Fields:   k.Fields(stored),
	}
	return ev, nil
}

// seal encrypts ev's object if its kind is sealed and the registry has a sealer. The registry
// compares and keeps events in clear; it seals only what it appends.
func (r *Registry) seal(ctx context.Context, k *kinds.Kind, ev *eventv1.ObjectChanged) (*eventv1.ObjectChanged, error) {
	if r.sealer == nil || !k.Sealed() {
		return ev, nil
	}
	sealed := &eventv1.ObjectChanged{Type: ev.Type, Reason: ev.Reason, Actor: ev.Actor, Cause: ev.Cause, Time: ev.Time,
		Ref: ev.Ref, Encoding: ev.Encoding, Object: ev.Object, Labels: ev.Labels, Fields: ev.Fields, Annotations: ev.Annotations}
	if err := r.sealer.Seal(ctx, sealed); err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("registry: sealing %s %s: %w", k.Kind, ev.GetRef().GetName(), err))
	}
	return sealed, nil
}

// decodeRecord turns a log record of kind k into the current revision of its object.
func decodeRecord(k *kinds.Kind, rec eventlog.Record) (current, error) {
	if rec.Err != nil {
		if IsForgotten(rec.Err) {
			return current{}, forgottenStatus(k, eventlog.KeyOf(rec.Event).Name, rec.Seq)
		}
		return current{}, rec.Err
	}
	obj, err := k.Decode(rec.Event.GetEncoding(), rec.Event.GetObject())
	if err != nil {
		return current{}, err
	}
	setRV(obj, rec.Seq)
	return current{seq: rec.Seq, obj: obj, raw: rec.Event.GetObject()}, nil
}

// decodeProjected turns an object of the projection into the current revision of an object of
// kind k (converted, when k is served by conversion).
func decodeProjected(k *kinds.Kind, o *projections.Object) (current, error) {
	obj, err := k.Decode(o.Event.GetEncoding(), o.Event.GetObject())
	if err != nil {
		return current{}, err
	}
	setRV(obj, o.Seq)
	return current{seq: o.Seq, obj: obj, raw: o.Event.GetObject()}, nil
}

// ObjectOf returns the projection-style view of a log record of kind k, for reads of the past.
func ObjectOf(k *kinds.Kind, rec eventlog.Record) *projections.Object {
	return &projections.Object{
		Key:    eventlog.KeyOf(rec.Event),
		Kind:   k,
		Seq:    rec.Seq,
		Event:  rec.Event,
		Labels: rec.Event.GetLabels(),
		Fields: rec.Event.GetFields(),
	}
}

func setRV(obj runtime.Object, seq uint64) {
	if m, err := meta.Accessor(obj); err == nil {
		m.SetResourceVersion(strconv.FormatUint(seq, 10))
	}
}
