package validation_test

import (
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/logplane/logplane/kinds"
)

// kindOf is obj's kind in the built-in catalog, by its Go type.
func kindOf(obj runtime.Object) *kinds.Kind {
	gvks, _, err := kinds.Scheme.ObjectKinds(obj)
	if err != nil {
		panic(err)
	}
	k, ok := catalog.ByKind(gvks[0])
	if !ok {
		panic("no kind for " + gvks[0].String())
	}
	return k
}

// apply defaults obj through its kind's strategy, as the registry does on create.
func apply(obj runtime.Object) {
	if obj != nil {
		kindOf(obj).Default(obj)
	}
}

// update defaults obj, which replaces old, as the registry does on update.
func update(obj, old runtime.Object) { kindOf(obj).DefaultUpdate(obj, old) }
