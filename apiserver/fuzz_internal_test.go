package apiserver

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/kinds/builtin"
)

// fuzzKind is a kind of the catalog with a Go type and an object of it to patch and to update.
type fuzzKind struct {
	k   *kinds.Kind
	obj runtime.Object
}

// fuzzKinds are the catalog's kinds that have Go types, in the catalog's order (the fuzz
// inputs pick one by index), each with an object: the manifest of testdata/seed.yaml where it
// has one of that kind, else an object with only a name, prepared and defaulted as a create.
func fuzzKinds(t testing.TB) []fuzzKind {
	t.Helper()
	seeds := map[string][]byte{}
	b, err := os.ReadFile("testdata/seed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(b), "\n---\n") {
		j, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		var tm struct{ APIVersion, Kind string }
		if err := json.Unmarshal(j, &tm); err != nil {
			t.Fatal(err)
		}
		seeds[tm.APIVersion+"/"+tm.Kind] = j
	}
	var out []fuzzKind
	for _, k := range builtin.Catalog().All() {
		if k.Unstructured {
			continue
		}
		j, ok := seeds[k.GroupVersion().String()+"/"+k.Kind]
		if !ok {
			j = []byte(`{"apiVersion":"` + k.GroupVersion().String() + `","kind":"` + k.Kind + `","metadata":{"name":"x"}}`)
		}
		obj, _, err := strictJSON.Decode(j, &k.GroupVersionKind, k.New())
		if err != nil {
			t.Fatalf("%s: %v", k.Kind, err)
		}
		m, _ := meta.Accessor(obj) // objects of the catalog have metadata
		if k.Namespaced {
			m.SetNamespace("default")
		}
		m.SetUID("3f1b1d3e-4c1a-4e2b-9a55-2f0d8c9f6d10")
		m.SetResourceVersion("7")
		if k.Strategy.PrepareForCreate != nil {
			k.Strategy.PrepareForCreate(obj)
		}
		k.Default(obj)
		out = append(out, fuzzKind{k, obj})
	}
	return out
}

// clientError fails the test unless err is a Kubernetes Status about the request: a 4xx.
func clientError(t *testing.T, what string, err error) {
	t.Helper()
	var se apierrors.APIStatus
	if !errors.As(err, &se) {
		t.Fatalf("%s: an error that is no Status (a 500 on the wire): %v", what, err)
	}
	if c := se.Status().Code; c < 400 || c >= 500 {
		t.Fatalf("%s: %d %v", what, c, err)
	}
}

// FuzzDecodeValidate decodes a request body (JSON, YAML or protobuf) as an object of a kind of
// the catalog, as a create or update does, then runs what the registry runs on it: the kind's
// preparation, defaults, validation of a create and of an update from and to the kind's object,
// its selectable fields and Table row, and encodes it again. Nothing may panic, and every
// refusal of the body must be a 4xx Status. Seeds: testdata/fuzz/FuzzDecodeValidate.
func FuzzDecodeValidate(f *testing.F) {
	fks := fuzzKinds(f)
	for i, fk := range fks {
		j, err := json.Marshal(fk.obj)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i), uint8(0), j, false)
	}
	f.Fuzz(func(t *testing.T, kind, format uint8, body []byte, strict bool) {
		fk := fks[int(kind)%len(fks)]
		k := fk.k
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.Header.Set("Content-Type", []string{mediaJSON, mediaYAML, mediaProtobuf}[int(format)%3])
		obj, _, err := decodeBody(r, body, k.GroupVersionKind, k.New(), strict)
		if err != nil {
			clientError(t, "decode", err)
			return
		}
		create := obj.DeepCopyObject()
		if k.Strategy.PrepareForCreate != nil {
			k.Strategy.PrepareForCreate(create)
		}
		k.Default(create)
		valid := len(k.Validate(create)) == 0
		k.Fields(create)
		if tb := k.Strategy.Table; tb != nil && valid {
			// A stored object must have a row: an error would be a 500 in a Table.
			if _, _, err := tb.Row(time.Now, create); err != nil {
				t.Fatalf("table row of a valid decoded %s: %v", k.Kind, err)
			}
		}
		for _, sub := range []string{"", "status"} {
			upd, old := obj.DeepCopyObject(), fk.obj.DeepCopyObject()
			if k.Strategy.PrepareForUpdate != nil {
				k.Strategy.PrepareForUpdate(upd, old, sub)
			}
			k.DefaultUpdate(upd, old)
			_ = k.ValidateUpdate(upd, old)
			_ = k.ValidateStatusUpdate(upd, old)
			_ = k.ValidateUpdate(old, upd)
		}
		if _, err := json.Marshal(create); err != nil {
			t.Fatalf("encoding a decoded %s: %v", k.Kind, err)
		}
		// What the log would store must read back: an event that does not decode blocks its object.
		data, err := kinds.Encode(k.ToStored(create), k.Encoding())
		if err != nil {
			t.Fatalf("encoding a decoded %s for the log: %v", k.Kind, err)
		}
		if _, err := k.Decode(k.Encoding(), data); err != nil {
			t.Fatalf("decoding the stored form of a decoded %s: %v", k.Kind, err)
		}
	})
}

// FuzzPatch applies a JSON patch, a merge patch or a strategic merge patch to the object of a
// kind of the catalog, as PATCH does (patchedObject), and validates the result as an update.
// Nothing may panic, and every refusal must be a 4xx Status. Seeds:
// testdata/fuzz/FuzzPatch (the strategic merge patch with a map as merge key among them).
func FuzzPatch(f *testing.F) {
	fks := fuzzKinds(f)
	f.Add(uint8(0), uint8(2), []byte(`{"metadata":{"labels":{"a":"b"}}}`), false)
	f.Add(uint8(0), uint8(0), []byte(`[{"op":"add","path":"/metadata/labels","value":{"a":"b"}}]`), true)
	f.Add(uint8(0), uint8(1), []byte(`{"metadata":{"annotations":null}}`), false)
	f.Fuzz(func(t *testing.T, kind, patchType uint8, patch []byte, strict bool) {
		fk := fks[int(kind)%len(fks)]
		k := fk.k
		pt := []types.PatchType{types.JSONPatchType, types.MergePatchType, types.StrategicMergePatchType}[int(patchType)%3]
		old := fk.obj.DeepCopyObject()
		obj, _, err := patchedObject(pt, k, old.DeepCopyObject(), patch, strict)
		if err != nil {
			clientError(t, string(pt), err)
			return
		}
		if k.Strategy.PrepareForUpdate != nil {
			k.Strategy.PrepareForUpdate(obj, old, "")
		}
		k.DefaultUpdate(obj, old)
		_ = k.ValidateStatusUpdate(obj, old)
		if len(k.ValidateUpdate(obj, old)) == 0 && k.Strategy.Table != nil {
			if _, _, err := k.Strategy.Table.Row(time.Now, obj); err != nil {
				t.Fatalf("table row of a valid patched %s: %v", k.Kind, err)
			}
		}
		if _, err := json.Marshal(obj); err != nil {
			t.Fatalf("encoding a patched %s: %v", k.Kind, err)
		}
	})
}
