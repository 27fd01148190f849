package kinds

import (
	"context"
	"fmt"
	"reflect"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Strategy is what one kind does on the write path and in the API, in the spirit of Kubernetes'
// registry strategies (k8s.io/apiserver pkg/registry/rest and each kind's strategy.go). The
// registry and the API server call through it and hold nothing of their own about a kind.
//
// Every field is optional. What every kind gets without asking is the registry's: uid,
// creationTimestamp, generation (1 on create for kinds with a spec, bumped when the spec
// changes), the status cleared on create and kept on updates of the main resource for kinds
// with a status subresource, everything but the status kept on updates of the status
// subresource, managed fields, finalizers and deletion.
//
// Built-in kinds fill it from typed functions with Typed; custom resources get one built from
// their schema (kinds/custom).
type Strategy struct {
	// PrepareForCreate sets, on a new object, what the server owns beyond metadata (a pod's
	// status starts Pending with its QoS class), after the registry cleared the status.
	PrepareForCreate func(obj runtime.Object)
	// CreateWithStatus keeps the status a new object is created with (a Node's, registered by
	// its agent), as Kubernetes' node strategy allows.
	CreateWithStatus bool
	// PrepareForUpdate keeps from old what an update through subresource sub ("" for the main
	// resource, "status", "finalize", ...) may not change, beyond what the registry keeps.
	PrepareForUpdate func(obj, old runtime.Object, sub string)
	// StatusResetsMetadata are the metadata fields ("labels", "ownerReferences", "annotations",
	// "finalizers") that an update of the status subresource may not change, beside everything
	// but the status, as the kind's status strategy in Kubernetes resets them.
	StatusResetsMetadata []string

	// Default sets the kind's defaults in obj, in place. It must be idempotent.
	Default func(obj runtime.Object)
	// DefaultUpdate carries over from old, before Default, what Kubernetes' registry carries
	// over on update when the client left it out (a Service's allocated cluster IPs).
	DefaultUpdate func(obj, old runtime.Object)

	// Validate returns the errors of an object about to be created (defaulted, name generated).
	Validate func(obj runtime.Object) field.ErrorList
	// ValidateUpdate returns the errors of an update of old to obj (obj defaulted).
	ValidateUpdate func(obj, old runtime.Object) field.ErrorList
	// ValidateStatusUpdate returns the errors of an update through the status subresource.
	ValidateStatusUpdate func(obj, old runtime.Object) field.ErrorList

	// Table gives the columns `kubectl get` prints (nil: Kubernetes' default, name and age).
	Table *Table

	// Scale reads and sets the replicas of the scale subresource; set exactly when the kind
	// serves it.
	Scale *Scale

	// Fields adds the kind's selectable fields of obj to set (metadata.name and, for namespaced
	// kinds, metadata.namespace are every kind's).
	Fields func(obj runtime.Object, set fields.Set)

	// PendingFinalizers reports finalizers of obj beyond metadata.finalizers (a Namespace's
	// spec.finalizers): the object stays until they are gone.
	PendingFinalizers func(obj runtime.Object) bool
	// Terminate marks obj as being deleted, for a kind whose objects a delete does not remove but
	// moves into a phase of their own (a Namespace turns Terminating and stays until finalized);
	// it reports whether it changed obj.
	Terminate func(obj runtime.Object, now time.Time) bool
	// GracePeriod is the grace period of a delete that names none, for a kind whose objects
	// terminate gracefully (pods); nil for kinds deleted at once, whatever the delete asks.
	GracePeriod func(obj runtime.Object) int64
	// ReturnDeletedObject answers a delete that removed the object with the object, not with a
	// Status (Kubernetes' pod storage does).
	ReturnDeletedObject bool

	// Holds returns the cluster-wide unique values obj holds (a Service's cluster IP and node
	// ports), and Allocate takes those a new object (old nil) or an update needs, from a, before
	// validation (Kubernetes' BeginCreate and BeginUpdate of the service storage). The registry
	// gives back, after a write, what the replaced revision held and the new one does not.
	Holds    func(obj runtime.Object) (ips []string, ports []int32)
	Allocate func(ctx context.Context, a Allocator, obj, old runtime.Object) error

	// TypeConverter, for kinds without a Go type, describes their objects for server-side apply
	// (structured-merge-diff); nil for built-in kinds, which use the scheme's.
	TypeConverter managedfields.TypeConverter
}

// Table gives the columns of a kind's Table and the cells of an object.
type Table struct {
	Columns []metav1.TableColumnDefinition
	// Row returns obj's cells, one per column, and the row's conditions; now is the clock ages
	// are measured against.
	Row func(now func() time.Time, obj runtime.Object) ([]any, []metav1.TableRowCondition, error)
}

// Scale reads and sets the replicas of a scalable object.
type Scale struct {
	// Get returns the desired replicas, the observed replicas and the label selector of the
	// pods counted, as a string.
	Get func(obj runtime.Object) (spec, status int32, selector string, err error)
	// Set sets the desired replicas.
	Set func(obj runtime.Object, replicas int32) error
}

// Allocator hands out, for one write, the values that must be unique among the objects of a
// kind in the cluster: a Service's cluster IP and node ports. The registry implements it.
type Allocator interface {
	// Keep marks values that the object holds already (in the revision an update replaces):
	// they stay its own.
	Keep(ips []string, ports []int32)
	// IP reserves ip, or any free address when ip is "". The error of an address asked for
	// says why, in Kubernetes' words (out of range, already allocated).
	IP(ip string) (string, error)
	// Port reserves a node port, or any free one when port is 0.
	Port(port int32) (int32, error)
}

// Typed builds a Strategy from functions of the kind's Go type T (a pointer type such as
// *corev1.Pod): each field is the Strategy field of the same name, typed. Functions given an
// object that is not a T (or a nil one) do nothing, and validation returns an internal error.
type Typed[T runtime.Object] struct {
	PrepareForCreate     func(obj T)
	CreateWithStatus     bool
	PrepareForUpdate     func(obj, old T, sub string)
	StatusResetsMetadata []string
	Default              func(obj T)
	DefaultUpdate        func(obj, old T)
	Validate             func(obj T) field.ErrorList
	ValidateUpdate       func(obj, old T) field.ErrorList
	ValidateStatusUpdate func(obj, old T) field.ErrorList
	Table                *Table
	// Scale returns the desired replicas (nil: 1), the observed ones and the pods' selector.
	Scale               func(obj T) (spec *int32, status int32, selector string)
	SetReplicas         func(obj T, replicas int32)
	Fields              func(obj T, set fields.Set)
	PendingFinalizers   func(obj T) bool
	Terminate           func(obj T, now time.Time) bool
	GracePeriod         func(obj T) int64
	ReturnDeletedObject bool
	Holds               func(obj T) (ips []string, ports []int32)
	// Allocate gets a nil old on create.
	Allocate func(ctx context.Context, a Allocator, obj, old T) error
}

// as returns obj as a T, false for another type or a nil pointer.
func as[T runtime.Object](obj runtime.Object) (T, bool) {
	t, ok := obj.(T)
	if !ok || isNil(obj) {
		var zero T
		return zero, false
	}
	return t, true
}

func isNil(obj runtime.Object) bool {
	if obj == nil {
		return true
	}
	v := reflect.ValueOf(obj)
	return v.Kind() == reflect.Pointer && v.IsNil()
}

// wrongType is the validation error of an object that is not of the kind's type.
func wrongType[T runtime.Object](obj runtime.Object) field.ErrorList {
	if isNil(obj) {
		return field.ErrorList{field.InternalError(nil, fmt.Errorf("validation: no object"))}
	}
	var want T
	return field.ErrorList{field.InternalError(nil, fmt.Errorf("validation: got a %T, want a %T", obj, want))}
}

// Strategy returns the untyped strategy.
func (t Typed[T]) Strategy() Strategy {
	s := Strategy{
		CreateWithStatus:     t.CreateWithStatus,
		ReturnDeletedObject:  t.ReturnDeletedObject,
		StatusResetsMetadata: t.StatusResetsMetadata,
		Table:                t.Table,
	}
	if f := t.PrepareForCreate; f != nil {
		s.PrepareForCreate = func(obj runtime.Object) {
			if o, ok := as[T](obj); ok {
				f(o)
			}
		}
	}
	if f := t.PrepareForUpdate; f != nil {
		s.PrepareForUpdate = func(obj, old runtime.Object, sub string) {
			o, ok1 := as[T](obj)
			p, ok2 := as[T](old)
			if ok1 && ok2 {
				f(o, p, sub)
			}
		}
	}
	if f := t.Default; f != nil {
		s.Default = func(obj runtime.Object) {
			if o, ok := as[T](obj); ok {
				f(o)
			}
		}
	}
	if f := t.DefaultUpdate; f != nil {
		s.DefaultUpdate = func(obj, old runtime.Object) {
			o, ok1 := as[T](obj)
			p, ok2 := as[T](old)
			if ok1 && ok2 {
				f(o, p)
			}
		}
	}
	if f := t.Validate; f != nil {
		s.Validate = func(obj runtime.Object) field.ErrorList {
			o, ok := as[T](obj)
			if !ok {
				return wrongType[T](obj)
			}
			return f(o)
		}
	}
	s.ValidateUpdate = typedUpdate(t.ValidateUpdate)
	s.ValidateStatusUpdate = typedUpdate(t.ValidateStatusUpdate)
	if get, set := t.Scale, t.SetReplicas; get != nil && set != nil {
		s.Scale = &Scale{
			Get: func(obj runtime.Object) (int32, int32, string, error) {
				o, ok := as[T](obj)
				if !ok {
					var want T
					return 0, 0, "", fmt.Errorf("kinds: %T has no scale, want a %T", obj, want)
				}
				spec, status, sel := get(o)
				if spec == nil {
					return 1, status, sel, nil
				}
				return *spec, status, sel, nil
			},
			Set: func(obj runtime.Object, n int32) error {
				o, ok := as[T](obj)
				if !ok {
					var want T
					return fmt.Errorf("kinds: %T has no scale, want a %T", obj, want)
				}
				set(o, n)
				return nil
			},
		}
	}
	if f := t.Fields; f != nil {
		s.Fields = func(obj runtime.Object, set fields.Set) {
			if o, ok := as[T](obj); ok {
				f(o, set)
			}
		}
	}
	if f := t.PendingFinalizers; f != nil {
		s.PendingFinalizers = func(obj runtime.Object) bool {
			o, ok := as[T](obj)
			return ok && f(o)
		}
	}
	if f := t.Terminate; f != nil {
		s.Terminate = func(obj runtime.Object, now time.Time) bool {
			o, ok := as[T](obj)
			return ok && f(o, now)
		}
	}
	if f := t.GracePeriod; f != nil {
		s.GracePeriod = func(obj runtime.Object) int64 {
			if o, ok := as[T](obj); ok {
				return f(o)
			}
			return 0
		}
	}
	if f := t.Holds; f != nil {
		s.Holds = func(obj runtime.Object) ([]string, []int32) {
			if o, ok := as[T](obj); ok {
				return f(o)
			}
			return nil, nil
		}
	}
	if f := t.Allocate; f != nil {
		s.Allocate = func(ctx context.Context, a Allocator, obj, old runtime.Object) error {
			o, ok := as[T](obj)
			if !ok {
				var want T
				return fmt.Errorf("kinds: allocating for a %T, want a %T", obj, want)
			}
			p, _ := as[T](old) // the zero T on create
			return f(ctx, a, o, p)
		}
	}
	return s
}

func typedUpdate[T runtime.Object](f func(obj, old T) field.ErrorList) func(obj, old runtime.Object) field.ErrorList {
	if f == nil {
		return nil
	}
	return func(obj, old runtime.Object) field.ErrorList {
		o, ok := as[T](obj)
		if !ok {
			return wrongType[T](obj)
		}
		p, ok := as[T](old)
		if !ok {
			return wrongType[T](old)
		}
		return f(o, p)
	}
}

// The generic calls of a kind's strategy, with what a kind without the hook gets.

// Default sets the kind's defaults in obj.
func (k *Kind) Default(obj runtime.Object) {
	if k.Strategy.Default != nil {
		k.Strategy.Default(obj)
	}
}

// DefaultUpdate sets the defaults of obj, which replaces old: what Default sets, after carrying
// over what the kind carries over on update.
func (k *Kind) DefaultUpdate(obj, old runtime.Object) {
	if k.Strategy.DefaultUpdate != nil {
		k.Strategy.DefaultUpdate(obj, old)
	}
	k.Default(obj)
}

// Validate returns the errors of obj about to be created.
func (k *Kind) Validate(obj runtime.Object) field.ErrorList {
	if k.Strategy.Validate == nil {
		return nil
	}
	return k.Strategy.Validate(obj)
}

// ValidateUpdate returns the errors of the update of old to obj.
func (k *Kind) ValidateUpdate(obj, old runtime.Object) field.ErrorList {
	if k.Strategy.ValidateUpdate == nil {
		return nil
	}
	return k.Strategy.ValidateUpdate(obj, old)
}

// ValidateStatusUpdate returns the errors of the update of old to obj through the status
// subresource.
func (k *Kind) ValidateStatusUpdate(obj, old runtime.Object) field.ErrorList {
	if k.Strategy.ValidateStatusUpdate == nil {
		return nil
	}
	return k.Strategy.ValidateStatusUpdate(obj, old)
}

// Cells makes the Row of a Table from a function of objects of type T that needs no clock and
// sets no row conditions (a kind whose columns hold no ages).
func Cells[T runtime.Object](f func(obj T) []any) func(now func() time.Time, obj runtime.Object) ([]any, []metav1.TableRowCondition, error) {
	return func(_ func() time.Time, obj runtime.Object) ([]any, []metav1.TableRowCondition, error) {
		o, ok := as[T](obj)
		if !ok {
			var want T
			return nil, nil, fmt.Errorf("got a %T, want a %T", obj, want)
		}
		return f(o), nil, nil
	}
}
