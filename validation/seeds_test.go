package validation_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/logplane/logplane/printers"
)

// TestSeedManifests applies defaults and validation to every manifest of the seed documents of a
// kind logplane serves: all must be accepted, and print.
func TestSeedManifests(t *testing.T) {
	data, err := os.ReadFile("testdata/seed-manifests.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := utilyaml.NewYAMLReader(bufioReader(data))
	n := 0
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var tm struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatal(err)
		}
		if tm.Kind == "" {
			continue
		}
		gv, err := schema.ParseGroupVersion(tm.APIVersion)
		if err != nil {
			t.Fatal(err)
		}
		k, ok := catalog.ByKind(gv.WithKind(tm.Kind))
		if !ok {
			t.Fatalf("%s %s: not a served kind", tm.APIVersion, tm.Kind)
		}
		n++
		t.Run(tm.Kind+"/"+tm.Metadata.Name, func(t *testing.T) {
			obj := load(t, k, string(doc))
			if errs := k.Validate(obj); len(errs) > 0 {
				t.Errorf("refused: %v", errs.ToAggregate())
			}
			if _, err := printers.Row(k, obj); err != nil {
				t.Errorf("printing: %v", err)
			}
		})
	}
	if n < 20 {
		t.Fatalf("read %d manifests, want the 20 or more of testdata/seed-manifests.yaml", n)
	}
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
