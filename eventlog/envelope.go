package eventlog

import (
	"errors"
	"fmt"
	"unicode/utf8"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// Reading the envelope is most of what a replay costs the reader, and the generic protobuf
// decoder fills the labels and fields maps through reflection. unmarshalEvent is a decoder
// written for ObjectChanged as it is, several times faster (BenchmarkUnmarshalEvent) and equal
// to proto.Unmarshal on every input (TestUnmarshalEventMatchesProto): anything it does not
// expect (an unknown field, a wire type it does not handle, bad UTF-8, a truncated message)
// sends the whole message to proto.Unmarshal, which decides. The object bytes and every string
// alias data: the caller gives a buffer it will never change.

// UnmarshalEvent decodes an ObjectChanged envelope as proto.Unmarshal does, faster. The event's
// object bytes and strings alias data, which the caller must never change afterwards.
func UnmarshalEvent(data []byte) (*eventv1.ObjectChanged, error) {
	ev, err := newEvent(data)
	if err != nil {
		return nil, fmt.Errorf("eventlog: decoding an event: %w", err)
	}
	return ev, nil
}

// AppendEvent appends the protobuf encoding of ev to b, as proto.MarshalAppend does (the order
// of map entries aside, which protobuf leaves open), faster.
func AppendEvent(b []byte, ev *eventv1.ObjectChanged) []byte {
	if ev.Type != 0 {
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(ev.Type)))
	}
	b = appendString(b, 2, ev.Reason)
	if a := ev.Actor; a != nil {
		n := 0
		if a.Kind != 0 {
			n += 1 + protowire.SizeVarint(uint64(int64(a.Kind)))
		}
		n += sizeString(2, a.Name)
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(n))
		if a.Kind != 0 {
			b = protowire.AppendTag(b, 1, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(int64(a.Kind)))
		}
		b = appendString(b, 2, a.Name)
	}
	if ev.Cause != 0 {
		b = protowire.AppendTag(b, 4, protowire.VarintType)
		b = protowire.AppendVarint(b, ev.Cause)
	}
	if t := ev.Time; t != nil {
		n := 0
		if t.Seconds != 0 {
			n += 1 + protowire.SizeVarint(uint64(t.Seconds))
		}
		if t.Nanos != 0 {
			n += 1 + protowire.SizeVarint(uint64(int64(t.Nanos)))
		}
		b = protowire.AppendTag(b, 5, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(n))
		if t.Seconds != 0 {
			b = protowire.AppendTag(b, 1, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(t.Seconds))
		}
		if t.Nanos != 0 {
			b = protowire.AppendTag(b, 2, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(int64(t.Nanos)))
		}
	}
	if r := ev.Ref; r != nil {
		fields := [...]string{r.Group, r.Version, r.Kind, r.Resource, r.Namespace, r.Name, r.Uid}
		n := 0
		for i, s := range fields {
			n += sizeString(protowire.Number(i+1), s)
		}
		b = protowire.AppendTag(b, 6, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(n))
		for i, s := range fields {
			b = appendString(b, protowire.Number(i+1), s)
		}
	}
	if ev.Encoding != 0 {
		b = protowire.AppendTag(b, 7, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(ev.Encoding)))
	}
	if len(ev.Object) > 0 {
		b = protowire.AppendTag(b, 8, protowire.BytesType)
		b = protowire.AppendBytes(b, ev.Object)
	}
	b = appendMap(b, 9, ev.Labels)
	b = appendMap(b, 10, ev.Fields)
	b = appendMap(b, 11, ev.Annotations)
	return b
}

// validStrings checks what proto.Marshal checks and AppendEvent does not: that every string is
// UTF-8, as proto3 requires (readers would refuse the event otherwise).
func validStrings(ev *eventv1.ObjectChanged) error {
	r, a := ev.GetRef(), ev.GetActor()
	for _, s := range [...]string{ev.GetReason(), a.GetName(), r.GetGroup(), r.GetVersion(), r.GetKind(),
		r.GetResource(), r.GetNamespace(), r.GetName(), r.GetUid()} {
		if !utf8.ValidString(s) {
			return fmt.Errorf("a string that is not UTF-8: %q", s)
		}
	}
	for _, m := range [...]map[string]string{ev.GetLabels(), ev.GetFields(), ev.GetAnnotations()} {
		for k, v := range m {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				return fmt.Errorf("a label, field or annotation that is not UTF-8: %q=%q", k, v)
			}
		}
	}
	return nil
}

func sizeString(num protowire.Number, s string) int {
	if s == "" {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(len(s))
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// appendMap writes a map<string, string> as protobuf does: one entry message per pair, with key
// and value always present.
func appendMap(b []byte, num protowire.Number, m map[string]string) []byte {
	for k, v := range m {
		b = protowire.AppendTag(b, num, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(1+protowire.SizeBytes(len(k))+1+protowire.SizeBytes(len(v))))
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, k)
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, v)
	}
	return b
}

// errSlowPath says the fast decoder leaves this message to proto.Unmarshal.
var errSlowPath = errors.New("eventlog: envelope needs the generic decoder")

// decodedEvent is an event and the messages it holds, allocated together: one allocation
// where there would be four, for every event a replay reads.
type decodedEvent struct {
	ev    eventv1.ObjectChanged
	actor eventv1.Actor
	time  timestamppb.Timestamp
	ref   eventv1.ObjectRef
}

// newEvent decodes data into a new event (see unmarshalEvent).
func newEvent(data []byte) (*eventv1.ObjectChanged, error) {
	d := &decodedEvent{}
	if err := fastUnmarshalEvent(data, &d.ev, d); err != nil {
		proto.Reset(&d.ev)
		if err := proto.Unmarshal(data, &d.ev); err != nil {
			return nil, err
		}
	}
	return &d.ev, nil
}

func unmarshalEvent(data []byte, ev *eventv1.ObjectChanged) error {
	if err := fastUnmarshalEvent(data, ev, nil); err != nil {
		proto.Reset(ev)
		return proto.Unmarshal(data, ev)
	}
	return nil
}

// fields of one message: calls fn with each field's number, wire type and value (the varint, or
// the bytes of a length-delimited field); any other wire type is left to the slow path.
func eachField(b []byte, fn func(num protowire.Number, typ protowire.Type, v uint64, bs []byte) error) error {
	for len(b) > 0 {
		num, typ, v, bs, n := nextField(b)
		if n < 0 {
			return errSlowPath
		}
		b = b[n:]
		if err := fn(num, typ, v, bs); err != nil {
			return err
		}
	}
	return nil
}

// nextField reads the field at the start of b: its number, wire type, value (the varint, or
// the bytes of a length-delimited field) and length; a length < 0 for anything the fast path
// does not handle.
func nextField(b []byte) (num protowire.Number, typ protowire.Type, v uint64, bs []byte, length int) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || num <= 0 {
		return 0, 0, 0, nil, -1
	}
	switch typ {
	case protowire.VarintType:
		v, m := protowire.ConsumeVarint(b[n:])
		if m < 0 {
			return 0, 0, 0, nil, -1
		}
		return num, typ, v, nil, n + m
	case protowire.BytesType:
		bs, m := protowire.ConsumeBytes(b[n:])
		if m < 0 {
			return 0, 0, 0, nil, -1
		}
		return num, typ, 0, bs, n + m
	}
	return 0, 0, 0, nil, -1
}

// str returns a string field's value. It shares the message's memory rather than copying it
// (the caller of unmarshalEvent does not change data afterwards), so decoding an envelope
// allocates no string at all.
func str(typ protowire.Type, bs []byte) (string, error) {
	if typ != protowire.BytesType || !utf8.Valid(bs) {
		return "", errSlowPath
	}
	if len(bs) == 0 {
		return "", nil
	}
	return unsafe.String(&bs[0], len(bs)), nil
}

// mapField is one entry of the labels (9) or fields (10) map.
type mapField struct {
	num  protowire.Number
	k, v string
}

// fastUnmarshalEvent decodes data into ev, or returns errSlowPath. The messages ev holds come
// from d when it is not nil. Map entries are gathered first, so that each map is made at its
// final size: growing maps entry by entry was the most of what decoding allocated.
func fastUnmarshalEvent(data []byte, ev *eventv1.ObjectChanged, d *decodedEvent) error {
	var entries [32]mapField
	kvs := entries[:0]
	nLabels := 0
	for b := data; len(b) > 0; {
		num, typ, v, bs, n := nextField(b)
		if n < 0 {
			return errSlowPath
		}
		b = b[n:]
		var err error
		switch num {
		case 1:
			if typ != protowire.VarintType {
				return errSlowPath
			}
			ev.Type = eventv1.ChangeType(int32(v))
		case 2:
			ev.Reason, err = str(typ, bs)
		case 3:
			if typ != protowire.BytesType {
				return errSlowPath
			}
			switch {
			case ev.Actor != nil: // a second occurrence merges into the first
			case d != nil:
				ev.Actor = &d.actor
			default:
				ev.Actor = &eventv1.Actor{}
			}
			err = eachField(bs, func(num protowire.Number, typ protowire.Type, v uint64, bs []byte) error {
				var err error
				switch {
				case num == 1 && typ == protowire.VarintType:
					ev.Actor.Kind = eventv1.ActorKind(int32(v))
				case num == 2:
					ev.Actor.Name, err = str(typ, bs)
				default:
					return errSlowPath
				}
				return err
			})
		case 4:
			if typ != protowire.VarintType {
				return errSlowPath
			}
			ev.Cause = v
		case 5:
			if typ != protowire.BytesType {
				return errSlowPath
			}
			switch {
			case ev.Time != nil: // a second occurrence merges into the first
			case d != nil:
				ev.Time = &d.time
			default:
				ev.Time = &timestamppb.Timestamp{}
			}
			err = eachField(bs, func(num protowire.Number, typ protowire.Type, v uint64, _ []byte) error {
				switch {
				case num == 1 && typ == protowire.VarintType:
					ev.Time.Seconds = int64(v)
				case num == 2 && typ == protowire.VarintType:
					ev.Time.Nanos = int32(v)
				default:
					return errSlowPath
				}
				return nil
			})
		case 6:
			if typ != protowire.BytesType {
				return errSlowPath
			}
			switch {
			case ev.Ref != nil: // a second occurrence merges into the first
			case d != nil:
				ev.Ref = &d.ref
			default:
				ev.Ref = &eventv1.ObjectRef{}
			}
			err = eachField(bs, func(num protowire.Number, typ protowire.Type, _ uint64, bs []byte) error {
				s, err := str(typ, bs)
				if err != nil {
					return err
				}
				switch num {
				case 1:
					ev.Ref.Group = s
				case 2:
					ev.Ref.Version = s
				case 3:
					ev.Ref.Kind = s
				case 4:
					ev.Ref.Resource = s
				case 5:
					ev.Ref.Namespace = s
				case 6:
					ev.Ref.Name = s
				case 7:
					ev.Ref.Uid = s
				default:
					return errSlowPath
				}
				return nil
			})
		case 7:
			if typ != protowire.VarintType {
				return errSlowPath
			}
			ev.Encoding = eventv1.Encoding(int32(v))
		case 8:
			if typ != protowire.BytesType {
				return errSlowPath
			}
			ev.Object = bs[:len(bs):len(bs)]
		case 9, 10:
			var e mapField
			e, err = mapEntry(typ, bs)
			e.num = num
			kvs = append(kvs, e)
			if num == 9 {
				nLabels++
			}
		case 11: // audit annotations: rare, made as they come
			var e mapField
			if e, err = mapEntry(typ, bs); err == nil {
				if ev.Annotations == nil {
					ev.Annotations = map[string]string{}
				}
				ev.Annotations[e.k] = e.v
			}
		default:
			return errSlowPath
		}
		if err != nil {
			return err
		}
	}
	if len(kvs) == 0 {
		return nil
	}
	// In the order read: of two entries with one key, the last wins, as in proto.Unmarshal.
	if nLabels > 0 && ev.Labels == nil {
		ev.Labels = make(map[string]string, nLabels)
	}
	if len(kvs) > nLabels && ev.Fields == nil {
		ev.Fields = make(map[string]string, len(kvs)-nLabels)
	}
	for _, e := range kvs {
		if e.num == 9 {
			ev.Labels[e.k] = e.v
		} else {
			ev.Fields[e.k] = e.v
		}
	}
	return nil
}

// mapEntry reads one map<string, string> entry.
func mapEntry(typ protowire.Type, bs []byte) (mapField, error) {
	var e mapField
	if typ != protowire.BytesType {
		return e, errSlowPath
	}
	for len(bs) > 0 {
		num, typ, _, val, n := nextField(bs)
		if n < 0 {
			return e, errSlowPath
		}
		bs = bs[n:]
		s, err := str(typ, val)
		if err != nil {
			return e, err
		}
		switch num {
		case 1:
			e.k = s
		case 2:
			e.v = s
		default:
			return e, errSlowPath
		}
	}
	return e, nil
}
