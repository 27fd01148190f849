package kinds

import (
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"

	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// protoMessage is what the generated code of every built-in Kubernetes type implements.
type protoMessage interface {
	Marshal() ([]byte, error)
	Unmarshal([]byte) error
}

// Encode writes obj in the given encoding for the log. Protobuf is the bare message of the
// versioned type (the log's envelope already names the kind); JSON is the object as the API
// serves it.
func Encode(obj runtime.Object, enc eventv1.Encoding) ([]byte, error) {
	switch enc {
	case eventv1.Encoding_ENCODING_PROTOBUF:
		pm, ok := obj.(protoMessage)
		if !ok {
			return nil, fmt.Errorf("kinds: %T has no protobuf encoding", obj)
		}
		return pm.Marshal()
	case eventv1.Encoding_ENCODING_JSON:
		return json.Marshal(obj)
	}
	return nil, fmt.Errorf("kinds: unknown encoding %v", enc)
}

// Encoding is how objects of the kind are written in the log: Kubernetes protobuf for kinds with
// a Go type, JSON for the others (protobuf is for typed kinds only, as in Kubernetes).
func (k *Kind) Encoding() eventv1.Encoding {
	if k.Stored().Unstructured {
		return eventv1.Encoding_ENCODING_JSON
	}
	return eventv1.Encoding_ENCODING_PROTOBUF
}

// Decode reads an object of kind k written by Encode, with its TypeMeta set. For a kind served
// by conversion, data is an object of the stored kind, which Decode converts.
func (k *Kind) Decode(enc eventv1.Encoding, data []byte) (runtime.Object, error) {
	if k.View != nil {
		obj, err := k.View.Of.Decode(enc, data)
		if err != nil {
			return nil, err
		}
		return k.FromStored(obj), nil
	}
	obj := k.New()
	switch enc {
	case eventv1.Encoding_ENCODING_PROTOBUF:
		pm, ok := obj.(protoMessage)
		if !ok {
			return nil, fmt.Errorf("kinds: %T has no protobuf encoding", obj)
		}
		if err := pm.Unmarshal(data); err != nil {
			return nil, fmt.Errorf("kinds: decoding %s: %w", k.Kind, err)
		}
	case eventv1.Encoding_ENCODING_JSON:
		if err := json.Unmarshal(data, obj); err != nil {
			return nil, fmt.Errorf("kinds: decoding %s: %w", k.Kind, err)
		}
	default:
		return nil, fmt.Errorf("kinds: unknown encoding %v", enc)
	}
	obj.GetObjectKind().SetGroupVersionKind(k.GroupVersionKind)
	return obj, nil
}
