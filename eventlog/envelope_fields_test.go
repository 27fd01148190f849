package eventlog

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// The envelope's hand-written encoder and decoder are tested against cases built from the
// message descriptor, not from a list of fields written by hand: a field added to event.proto
// is set by randomMessage and by TestAppendEventCoversEveryField without a change here, so an
// encoder that forgets it fails.

// randomMessage sets each field of m (recursively, every field the descriptor declares) at
// random: left unset about a quarter of the time, else a random value of its type (strings
// valid UTF-8, as proto3 requires; enums also outside their declared values, as an open enum
// may be). Each field set to a non-default value is recorded in seen (nil: not recorded).
func randomMessage(rng *rand.Rand, m protoreflect.Message, seen map[protoreflect.FullName]bool) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if rng.IntN(4) == 0 {
			continue
		}
		switch {
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			for range rng.IntN(8) {
				mp.Set(randomScalar(rng, fd.MapKey()).MapKey(), randomScalar(rng, fd.MapValue()))
			}
		case fd.IsList():
			l := m.Mutable(fd).List()
			for range rng.IntN(4) {
				if fd.Message() != nil {
					e := l.NewElement()
					randomMessage(rng, e.Message(), seen)
					l.Append(e)
				} else {
					l.Append(randomScalar(rng, fd))
				}
			}
		case fd.Message() != nil:
			randomMessage(rng, m.Mutable(fd).Message(), seen)
		default:
			m.Set(fd, randomScalar(rng, fd))
		}
		if seen != nil && m.Has(fd) {
			seen[fd.FullName()] = true
		}
	}
}

// randomScalar returns a random value of a field that is not a message, sometimes its zero
// value, sometimes its extremes.
func randomScalar(rng *rand.Rand, fd protoreflect.FieldDescriptor) protoreflect.Value {
	edge := rng.IntN(8)
	switch fd.Kind() {
	case protoreflect.StringKind:
		if edge == 0 {
			return protoreflect.ValueOfString("")
		}
		return protoreflect.ValueOfString(strings.Repeat(string(rune('a'+rng.IntN(26))), rng.IntN(12)) + "é")
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte(strings.Repeat("\x00\xffk8s", rng.IntN(50))))
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(rng.IntN(2) == 0)
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		if edge == 0 {
			return protoreflect.ValueOfEnum(protoreflect.EnumNumber(rng.IntN(3) - 1 + vals.Len())) // undeclared
		}
		return protoreflect.ValueOfEnum(vals.Get(rng.IntN(vals.Len())).Number())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32([...]int32{0, math.MinInt32, math.MaxInt32, -1}[edge%4] + int32(edge/4)*rng.Int32N(1e9))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64([...]int64{0, math.MinInt64, math.MaxInt64, -1}[edge%4] + int64(edge/4)*(rng.Int64()-rng.Int64()))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32([...]uint32{0, math.MaxUint32, 1, rng.Uint32()}[edge%4])
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64([...]uint64{0, math.MaxUint64, 1, rng.Uint64()}[edge%4])
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(rng.Float32() * float32(edge))
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(rng.NormFloat64() * float64(edge))
	}
	panic("randomScalar: unhandled kind " + fd.Kind().String())
}

// fieldPath is a field of the envelope and the message fields that lead to it.
type fieldPath []protoreflect.FieldDescriptor

func (p fieldPath) String() string {
	var b strings.Builder
	for i, fd := range p {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(string(fd.Name()))
	}
	return b.String()
}

// fieldPaths lists every field of md, and the fields of the messages it holds, depth first.
func fieldPaths(md protoreflect.MessageDescriptor, prefix fieldPath) []fieldPath {
	var out []fieldPath
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		p := append(append(fieldPath{}, prefix...), fd)
		out = append(out, p)
		if fd.Message() != nil && !fd.IsMap() && len(p) < 8 {
			out = append(out, fieldPaths(fd.Message(), p)...)
		}
	}
	return out
}

// setOnly sets, in m, the field p leads to to a value other than its default (the messages on
// the way set only as far as needed), with variant choosing which value.
func setOnly(m protoreflect.Message, p fieldPath, variant int) {
	fd := p[0]
	if len(p) > 1 {
		setOnly(m.Mutable(fd).Message(), p[1:], variant)
		return
	}
	rng := rand.New(rand.NewPCG(uint64(variant), uint64(fd.Number())))
	switch {
	case fd.IsMap():
		m.Mutable(fd).Map().Set(protoreflect.ValueOfString("k").MapKey(), nonZero(rng, fd.MapValue(), variant))
	case fd.IsList():
		l := m.Mutable(fd).List()
		if fd.Message() != nil {
			l.AppendMutable()
		} else {
			l.Append(nonZero(rng, fd, variant))
		}
	case fd.Message() != nil:
		m.Mutable(fd) // an empty message is still present
	default:
		m.Set(fd, nonZero(rng, fd, variant))
	}
}

// nonZero is a value of fd other than its zero value.
func nonZero(rng *rand.Rand, fd protoreflect.FieldDescriptor, variant int) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(strings.Repeat("é", 1+variant))
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte(strings.Repeat("\x00", 1+variant)))
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber(1 + variant))
	}
	for {
		v := randomScalar(rng, fd)
		if v.Interface() != fd.Default().Interface() {
			return v
		}
	}
}

// TestAppendEventCoversEveryField: for every field of the envelope's descriptor (the fields of
// the messages it holds included), an event with only that field set encodes, with
// AppendEvent, to what proto.Unmarshal reads back as the same event and to proto.Marshal's
// size; and the fast decoder reads what proto.Marshal writes of it. A field added to
// event.proto and forgotten by the hand encoder or decoder fails here.
func TestAppendEventCoversEveryField(t *testing.T) {
	paths := fieldPaths((&eventv1.ObjectChanged{}).ProtoReflect().Descriptor(), nil)
	if len(paths) < 10 {
		t.Fatalf("only %d fields found in the descriptor", len(paths))
	}
	for _, p := range paths {
		for variant := range 3 {
			ev := &eventv1.ObjectChanged{}
			setOnly(ev.ProtoReflect(), p, variant)
			data := AppendEvent(nil, ev)
			back := &eventv1.ObjectChanged{}
			if err := proto.Unmarshal(data, back); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			if !proto.Equal(ev, back) {
				t.Fatalf("%s: AppendEvent wrote\n%v\nwhich reads back as\n%v", p, ev, back)
			}
			if want := proto.Size(ev); len(data) != want {
				t.Fatalf("%s: AppendEvent wrote %d bytes, proto.Marshal writes %d", p, len(data), want)
			}
			wire, err := proto.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			got, err := UnmarshalEvent(wire)
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			if !proto.Equal(ev, got) {
				t.Fatalf("%s: UnmarshalEvent read\n%v\nwant\n%v", p, got, ev)
			}
		}
	}
}

// TestRandomEventSetsEveryField: the random events the round-trip tests use set every field of
// the descriptor, so that they, too, cover fields added later.
func TestRandomEventSetsEveryField(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	seen := map[protoreflect.FullName]bool{}
	for range 200 {
		randomMessage(rng, (&eventv1.ObjectChanged{}).ProtoReflect(), seen)
	}
	for _, p := range fieldPaths((&eventv1.ObjectChanged{}).ProtoReflect().Descriptor(), nil) {
		if fd := p[len(p)-1]; !seen[fd.FullName()] {
			t.Errorf("no random event sets %s", p)
		}
	}
}
