package engine_test

import (
	"context"
	"errors"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog/eventlogtest"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/registry"
)

// Kinds returns the kinds in the order asked, and says which one the catalog lacks or that
// there is no registry; SetupOf's Setup calls New with the config and returns its error.
func TestKindsAndSetupOf(t *testing.T) {
	l := eventlogtest.Open(t)
	store := projections.New(builtin.Catalog(), nil)
	if _, err := engine.New(store, engine.Options{}).Kinds(pods); err == nil {
		t.Error("Kinds without a registry: no error")
	}
	reg, err := registry.New(registry.Config{Log: l, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	e := engine.New(store, engine.Options{Registry: reg})
	ks, err := e.Kinds(replicaSets, pods)
	if err != nil || len(ks) != 2 || ks[0].GroupResource() != replicaSets || ks[1].GroupResource() != pods {
		t.Errorf("Kinds(replicasets, pods) = %v, %v", ks, err)
	}
	if _, err := e.Kinds(pods, schema.GroupResource{Group: "example.com", Resource: "widgets"}); err == nil {
		t.Error("Kinds of an unknown resource: no error")
	}
	boom := errors.New("boom")
	var got string
	setup := engine.SetupOf(func(_ *engine.Engine, cfg string) (int, error) { got = cfg; return 0, boom }, "cfg")
	if err := setup(context.Background(), e); !errors.Is(err, boom) || got != "cfg" {
		t.Errorf("SetupOf: New saw %q, Setup returned %v", got, err)
	}
}
