package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/admission"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// maxAttempts bounds the retries of a write that lost a race it may retry (an update with no
// resourceVersion precondition, a create with generateName).
const maxAttempts = 16

// Create stores obj, a new object of kind k, and returns it as stored. obj's namespace must be
// set for namespaced kinds; its name, or generateName. obj is changed in place.
//
// Errors: 400 if obj carries a resourceVersion, 404 if its namespace does not exist, 403 if the
// namespace is terminating, 422 if it is invalid, 409 if an object of that name exists.
func (r *Registry) Create(ctx context.Context, k *kinds.Kind, obj runtime.Object, req Request) (runtime.Object, error) {
	return r.create(ctx, k, obj, req, false)
}

// CreateApplied is Create for an object whose managedFields server-side apply already set.
func (r *Registry) CreateApplied(ctx context.Context, k *kinds.Kind, obj runtime.Object, req Request) (runtime.Object, error) {
	return r.create(ctx, k, obj, req, true)
}

func (r *Registry) create(ctx context.Context, k *kinds.Kind, obj runtime.Object, req Request, applied bool) (runtime.Object, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("%T has no metadata", obj))
	}
	if m.GetResourceVersion() != "" {
		return nil, apierrors.NewBadRequest("resourceVersion should not be set on objects to be created")
	}
	if !k.Namespaced {
		m.SetNamespace("")
	} else if m.GetNamespace() == "" {
		return nil, apierrors.NewBadRequest("the namespace of the object must be set")
	}
	generated := m.GetName() == "" && m.GetGenerateName() != ""
	if generated {
		m.SetName(generateName(m.GetGenerateName()))
	}
	if m.GetName() == "" {
		return nil, apierrors.NewInvalid(k.GroupKind(), "", field.ErrorList{
			field.Required(field.NewPath("metadata", "name"), "name or generateName is required")})
	}
	if err := r.namespaceOpen(ctx, k, m.GetNamespace()); err != nil {
		return nil, err
	}
	r.prepareForCreate(k, obj)
	k.Default(obj)
	attrs, err := r.admitMutating(ctx, k, obj, nil, admission.Create, "", req)
	if err != nil {
		return nil, err
	}
	if attrs != nil {
		k.Default(obj) // what admission added (a pod's token volume) is defaulted too
	}
	if req.Admit != nil {
		if err := req.Admit(ctx, obj, nil); err != nil {
			return nil, err
		}
	}
	if errs := k.Validate(obj); len(errs) > 0 {
		return nil, apierrors.NewInvalid(k.GroupKind(), m.GetName(), errs)
	}
	if err := r.admitValidating(ctx, attrs); err != nil {
		return nil, err
	}
	alloc, err := r.allocate(ctx, k, obj, nil, req)
	if err != nil {
		return nil, err
	}
	committed := false
	defer func() {
		if !committed {
			alloc.revert(context.WithoutCancel(ctx))
		}
	}()
	if !applied {
		fm, err := r.FieldManager(k, "")
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		obj = fm.UpdateNoErrors(k.New(), obj, req.manager())
	}
	m, _ = meta.Accessor(obj) // the field manager returns an object of the same kind
	reason := req.Reason
	if reason == "" {
		reason = ReasonCreate
	}
	for attempt := 0; ; attempt++ {
		ev, err := r.newEvent(k, obj, eventv1.ChangeType_CHANGE_TYPE_ADDED, reason, req)
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		attrs.record(ev)
		if req.DryRun {
			return obj, nil
		}
		if ev, err = r.seal(ctx, k, ev); err != nil {
			return nil, err
		}
		seq, err := r.log.Create(ctx, ev)
		if errors.Is(err, eventlog.ErrExists) && generated && attempt < maxAttempts {
			m.SetName(generateName(m.GetGenerateName()))
			// What was allocated names the Service by its name: take it again under the new one.
			alloc.revert(context.WithoutCancel(ctx))
			if alloc, err = r.allocate(ctx, k, obj, nil, req); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, statusError(k, m.GetName(), err)
		}
		committed = true
		if err := r.store.WaitFor(ctx, seq); err != nil {
			return nil, statusError(k, m.GetName(), err)
		}
		setRV(obj, seq)
		return obj, nil
	}
}

// namespaceOpen checks that a namespaced kind's namespace exists and is not terminating.
func (r *Registry) namespaceOpen(ctx context.Context, k *kinds.Kind, ns string) error {
	if !k.Namespaced {
		return nil
	}
	o, ok := r.store.Get(eventlog.Key{Resource: "namespaces", Name: ns})
	if !ok {
		return apierrors.NewNotFound(corev1.Resource("namespaces"), ns)
	}
	if o.Fields["status.phase"] == string(corev1.NamespaceTerminating) {
		err := apierrors.NewForbidden(k.GroupResource(), "",
			fmt.Errorf("unable to create new content in namespace %s because it is being terminated", ns))
		err.ErrStatus.Details.Causes = append(err.ErrStatus.Details.Causes, metav1.StatusCause{
			Type: corev1.NamespaceTerminatingCause, Message: fmt.Sprintf("namespace %s is being terminated", ns), Field: "metadata.namespace"})
		return err
	}
	return nil
}

// prepareForCreate sets the fields the server owns on a new object.
func (r *Registry) prepareForCreate(k *kinds.Kind, obj runtime.Object) {
	m, _ := meta.Accessor(obj) // checked by the caller
	m.SetUID(uuid.NewUUID())
	m.SetCreationTimestamp(metav1.NewTime(r.now().Truncate(1e9)))
	m.SetDeletionTimestamp(nil)
	m.SetDeletionGracePeriodSeconds(nil)
	m.SetSelfLink("")
	if k.HasSpec() {
		m.SetGeneration(1)
	} else {
		m.SetGeneration(0)
	}
	if !k.Strategy.CreateWithStatus {
		k.ClearStatus(obj)
	}
	if k.Strategy.PrepareForCreate != nil {
		k.Strategy.PrepareForCreate(obj)
	}
}

// generateName appends five random characters to prefix, as Kubernetes does.
func generateName(prefix string) string {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789"
	const maxPrefix = 63 - 5
	if len(prefix) > maxPrefix {
		prefix = prefix[:maxPrefix]
	}
	b := []byte(prefix)
	for range 5 {
		b = append(b, alphabet[rand.IntN(len(alphabet))])
	}
	return string(b)
}

// Mutation turns the current revision of an object (a copy the function may change) into the
// next one. Its errors are returned to the caller unchanged (make them StatusErrors). If the
// result carries a resourceVersion, it must be the current one (else 409 Conflict); if not, the
// registry retries the mutation on a fresher revision when another writer got there first.
type Mutation func(cur runtime.Object) (runtime.Object, error)

// Subresource names what a write may change: "" for the main resource (everything but status
// for kinds with a status subresource), "status" for status only, and others ("scale",
// "binding") which change the main resource under a field manager of their own.
type Subresource = string

// UpdateOptions shape one update.
type UpdateOptions struct {
	// Subresource: "", "status", "scale", "binding", ...
	Subresource Subresource
	// Applied says that the mutation already set metadata.managedFields (server-side apply).
	Applied bool
	// CreateIfMissing, when set, is called instead of failing with 404 when the object does not
	// exist (server-side apply creates).
	CreateIfMissing func(ctx context.Context) (runtime.Object, error)
}

// Update replaces the object with obj (main resource). A resourceVersion in obj is a
// precondition (409 Conflict if stale); with none, the update is unconditional.
func (r *Registry) Update(ctx context.Context, k *kinds.Kind, obj runtime.Object, req Request) (runtime.Object, error) {
	return r.updateWith(ctx, k, obj, req, "")
}

// UpdateStatus replaces the status of the object with obj's (status subresource semantics: the
// rest of obj is ignored). A resourceVersion in obj is a precondition.
func (r *Registry) UpdateStatus(ctx context.Context, k *kinds.Kind, obj runtime.Object, req Request) (runtime.Object, error) {
	if !k.HasSubresource("status") {
		return nil, apierrors.NewNotFound(k.GroupResource(), "status")
	}
	return r.updateWith(ctx, k, obj, req, "status")
}

func (r *Registry) updateWith(ctx context.Context, k *kinds.Kind, obj runtime.Object, req Request, sub string) (runtime.Object, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("%T has no metadata", obj))
	}
	ns := m.GetNamespace()
	if !k.Namespaced {
		ns = ""
	}
	return r.Modify(ctx, k, ns, m.GetName(), req, UpdateOptions{Subresource: sub}, func(runtime.Object) (runtime.Object, error) {
		return obj.DeepCopyObject(), nil
	})
}

// Modify is the read-modify-write every update goes through: it reads the current revision,
// applies mutate, prepares, defaults and validates the result, records managed fields, and
// appends it with compare-and-set, retrying on a conflict when the result carries no
// resourceVersion. A result equal to the current revision writes nothing. When the object is
// being deleted and the result has no finalizers left, the object is deleted.
//
// Errors: 404 if the object does not exist, 409 on a stale resourceVersion or uid, 422 if the
// result is invalid, and whatever mutate returns.
func (r *Registry) Modify(ctx context.Context, k *kinds.Kind, ns, name string, req Request, opts UpdateOptions, mutate Mutation) (runtime.Object, error) {
	key := keyOf(k, ns, name)
	fromLog := false
	for attempt := 0; ; attempt++ {
		cur, err := r.current(ctx, k, key, fromLog)
		if apierrors.IsNotFound(err) && opts.CreateIfMissing != nil {
			return opts.CreateIfMissing(ctx)
		}
		if err != nil {
			return nil, err
		}
		next, err := mutate(cur.obj.DeepCopyObject())
		if err != nil {
			return nil, err
		}
		nm, err := meta.Accessor(next)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("%T has no metadata", next))
		}
		cm, _ := meta.Accessor(cur.obj)
		precondition := nm.GetResourceVersion() != ""
		if precondition && nm.GetResourceVersion() != cm.GetResourceVersion() {
			return nil, apierrors.NewConflict(k.GroupResource(), name, errors.New(optimisticLockMessage))
		}
		if nm.GetUID() != "" && nm.GetUID() != cm.GetUID() {
			return nil, apierrors.NewConflict(k.GroupResource(), name,
				fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", nm.GetUID(), cm.GetUID()))
		}
		if nm.GetName() != name {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", nm.GetName(), name))
		}
		if k.Namespaced && nm.GetNamespace() != "" && nm.GetNamespace() != ns {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("the namespace of the object (%s) does not match the namespace on the request (%s)", nm.GetNamespace(), ns))
		}
		if !precondition {
			// Unconditional: the update applies to the revision read.
			nm.SetResourceVersion(cm.GetResourceVersion())
		}
		next = r.prepareForUpdate(k, opts.Subresource, next, cur.obj)
		k.DefaultUpdate(next, cur.obj)
		var attrs *attributes
		if opts.Subresource != "binding" {
			if attrs, err = r.admitMutating(ctx, k, next, cur.obj, admission.Update, opts.Subresource, req); err != nil {
				return nil, err
			}
		}
		if req.Admit != nil {
			if err := req.Admit(ctx, next, cur.obj); err != nil {
				return nil, err
			}
		}
		var alloc *allocation
		if opts.Subresource == "" {
			// A Service's new type may need a cluster IP or node ports (before validation, as
			// Kubernetes' BeginUpdate allocates).
			if alloc, err = r.allocate(ctx, k, next, cur.obj, req); err != nil {
				return nil, err
			}
		}
		next, typ, err := r.modifyAllocated(ctx, k, key, cur, next, precondition, attempt, req, opts, attrs)
		if errors.Is(err, errRetry) {
			alloc.revert(context.WithoutCancel(ctx))
			fromLog = true
			continue
		}
		if err != nil {
			if next == nil { // not written: give back what was taken for it
				alloc.revert(context.WithoutCancel(ctx))
			}
			return nil, err
		}
		if req.DryRun {
			return next, nil
		}
		if typ == eventv1.ChangeType_CHANGE_TYPE_DELETED {
			r.release(context.WithoutCancel(ctx), k, nil, cur.obj, req.Cause)
		} else if opts.Subresource == "" {
			r.release(context.WithoutCancel(ctx), k, next, cur.obj, req.Cause)
		}
		return next, nil
	}
}

// errRetry says that a write lost a race it may retry on a fresher revision.
var errRetry = errors.New("registry: retry")

// modifyAllocated is the rest of Modify once the values the result holds are allocated: it
// validates, records managed fields and appends next over cur. It returns the object written
// and its change type, or errRetry.
func (r *Registry) modifyAllocated(ctx context.Context, k *kinds.Kind, key eventlog.Key, cur current, next runtime.Object, precondition bool, attempt int, req Request, opts UpdateOptions, attrs *attributes) (runtime.Object, eventv1.ChangeType, error) {
	name := key.Name
	var errs field.ErrorList
	switch opts.Subresource {
	case "status":
		errs = k.ValidateStatusUpdate(next, cur.obj)
	case "binding":
		// A binding sets spec.nodeName, which no pod update may change; Kubernetes does not
		// validate it as an update either (the binding's mutation checks what it needs).
	default:
		errs = k.ValidateUpdate(next, cur.obj)
	}
	if len(errs) > 0 {
		return nil, 0, apierrors.NewInvalid(k.GroupKind(), name, errs)
	}
	if err := r.admitValidating(ctx, attrs); err != nil {
		return nil, 0, err
	}
	// A binding records no managed fields, as on Kubernetes (its binding storage writes the pod
	// without the field manager): kube-scheduler never shows up as a manager of a pod.
	if !opts.Applied && opts.Subresource != "binding" {
		var err error
		if next, err = r.updateManagedFields(k, opts.Subresource, cur.obj, next, req.manager()); err != nil {
			return nil, 0, apierrors.NewInternalError(err)
		}
	}
	nm, _ := meta.Accessor(next)

	typ := eventv1.ChangeType_CHANGE_TYPE_MODIFIED
	reason := req.Reason
	if nm.GetDeletionTimestamp() != nil && !pendingFinalizers(k, next) && !nm.GetDeletionTimestamp().After(r.now()) {
		typ = eventv1.ChangeType_CHANGE_TYPE_DELETED
		if reason == "" {
			reason = ReasonFinalize
		}
	}
	if reason == "" {
		reason = r.reasonFor(k, opts.Subresource, cur.obj, next)
	}
	ev, err := r.newEvent(k, next, typ, reason, req)
	if err != nil {
		return nil, 0, apierrors.NewInternalError(err)
	}
	attrs.record(ev)
	if typ == eventv1.ChangeType_CHANGE_TYPE_MODIFIED && bytes.Equal(ev.GetObject(), cur.raw) {
		return cur.obj, typ, nil // nothing changed: nothing to write
	}
	if req.DryRun {
		return next, typ, nil
	}
	if ev, err = r.seal(ctx, k, ev); err != nil {
		return nil, 0, err
	}
	seq, err := r.log.Append(ctx, ev, cur.seq)
	if errors.Is(err, eventlog.ErrConflict) && !precondition && attempt < maxAttempts {
		return nil, 0, errRetry
	}
	if err != nil {
		return nil, 0, statusError(k, name, err)
	}
	if err := r.store.WaitFor(ctx, seq); err != nil {
		return next, typ, statusError(k, name, err) // written: next is returned with the error
	}
	setRV(next, seq)
	return next, typ, nil
}

func fieldManagerSubresource(sub string) string {
	if sub == "binding" {
		return "" // a binding sets spec.nodeName of the main resource
	}
	return sub
}

// current reads the latest revision of key: from the projection, or from the log itself after
// losing a race (the projection may not have applied the winner yet).
func (r *Registry) current(ctx context.Context, k *kinds.Kind, key eventlog.Key, fromLog bool) (current, error) {
	if !fromLog {
		o, ok := r.store.Get(key)
		if !ok {
			return current{}, apierrors.NewNotFound(k.GroupResource(), key.Name)
		}
		c, err := decodeProjected(k, o)
		if err != nil {
			return current{}, apierrors.NewInternalError(err)
		}
		return c, nil
	}
	rec, err := r.log.Get(ctx, key)
	if err != nil {
		return current{}, statusError(k, key.Name, err)
	}
	c, err := decodeRecord(k, rec)
	if err != nil {
		return current{}, apierrors.NewInternalError(err)
	}
	return c, nil
}

// prepareForUpdate keeps what clients may not change: system metadata, the status on the main
// resource of kinds with a status subresource, everything but the status on the status
// subresource, and what the kind's strategy keeps; and bumps the generation when the spec
// changes.
func (r *Registry) prepareForUpdate(k *kinds.Kind, sub string, next, cur runtime.Object) runtime.Object {
	nm, _ := meta.Accessor(next)
	cm, _ := meta.Accessor(cur)
	if sub == "status" {
		// Kubernetes' status strategies reset the spec (every field but metadata and status)
		// and keep the new metadata, but for what a kind's strategy resets as well.
		k.KeepAllButStatus(next, cur)
		for _, f := range k.Strategy.StatusResetsMetadata {
			switch f {
			case "labels":
				nm.SetLabels(cm.GetLabels())
			case "annotations":
				nm.SetAnnotations(cm.GetAnnotations())
			case "ownerReferences":
				nm.SetOwnerReferences(cm.GetOwnerReferences())
			case "finalizers":
				nm.SetFinalizers(cm.GetFinalizers())
			}
		}
	} else if sub != "binding" {
		k.KeepStatus(next, cur)
	}
	nm.SetUID(cm.GetUID())
	nm.SetNamespace(cm.GetNamespace())
	nm.SetCreationTimestamp(cm.GetCreationTimestamp())
	nm.SetDeletionTimestamp(cm.GetDeletionTimestamp())
	nm.SetDeletionGracePeriodSeconds(cm.GetDeletionGracePeriodSeconds())
	nm.SetSelfLink("")
	nm.SetGeneration(cm.GetGeneration())
	if k.Strategy.PrepareForUpdate != nil {
		k.Strategy.PrepareForUpdate(next, cur, sub)
	}
	// A binding sets spec.nodeName without bumping the generation: Kubernetes' binding storage
	// writes the pod directly, not through the pod strategy that counts spec changes.
	if sub != "binding" && k.SpecChanged(next, cur) {
		nm.SetGeneration(cm.GetGeneration() + 1)
	}
	return next
}

// pendingFinalizers reports whether obj has finalizers left: metadata.finalizers, and those of
// the kind (a Namespace's spec.finalizers).
func pendingFinalizers(k *kinds.Kind, obj runtime.Object) bool {
	if k.Strategy.PendingFinalizers != nil && k.Strategy.PendingFinalizers(obj) {
		return true
	}
	m, err := meta.Accessor(obj)
	return err == nil && len(m.GetFinalizers()) > 0
}

// reasonFor names what an update changed.
func (r *Registry) reasonFor(k *kinds.Kind, sub string, cur, next runtime.Object) string {
	switch sub {
	case "status":
		return ReasonStatus
	case "scale":
		return ReasonScale
	case "binding":
		return ReasonBind
	}
	cm, _ := meta.Accessor(cur)
	nm, _ := meta.Accessor(next)
	if k.HasSpec() {
		if nm.GetGeneration() != cm.GetGeneration() {
			return ReasonSpec
		}
		if k.StatusChanged(next, cur) {
			return ReasonStatus
		}
		return ReasonMetadata
	}
	if k.MetadataOnly(next, cur) {
		return ReasonMetadata
	}
	return ReasonUpdate
}
