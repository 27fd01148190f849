// Package registry is the write path of logplane's object store, used in-process by every writer:
// the API server, and reconcilers and node agents that append to the log directly. It does what a
// Kubernetes API server's store does before and after a write: defaulting, validation, uid,
// creationTimestamp, generation, generateName, managedFields, status/spec separation, optimistic
// concurrency, graceful deletion and finalizers; it appends the result to the log as an
// ObjectChanged event carrying the actor, the cause and a reason, and it waits until the
// projection has applied the event before it returns (read your writes).
//
// Errors are apimachinery StatusErrors (k8s.io/apimachinery/pkg/api/errors), ready to be sent to
// a Kubernetes client.
package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/client-go/applyconfigurations"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/projections"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// objectLog is what the registry needs of the log.
type objectLog interface {
	Append(ctx context.Context, ev *eventv1.ObjectChanged, expect uint64) (uint64, error)
	Create(ctx context.Context, ev *eventv1.ObjectChanged) (uint64, error)
	Get(ctx context.Context, key eventlog.Key) (eventlog.Record, error)
	History(ctx context.Context, key eventlog.Key) ([]eventlog.Record, error)
	At(ctx context.Context, key eventlog.Key, seq uint64) (eventlog.Record, error)
	Follow(ctx context.Context, f eventlog.Filter, after uint64, fn func(eventlog.Record) error) error
	Replay(ctx context.Context, f eventlog.Filter, after, upTo uint64, fn func(eventlog.Record) error) error
	Bounds(ctx context.Context) (first, last uint64, err error)
}

// readModel is what the registry needs of the projection.
type readModel interface {
	Applied() uint64
	WaitFor(ctx context.Context, seq uint64) error
	Get(key eventlog.Key) (*projections.Object, bool)
	List(q projections.Query) ([]*projections.Object, uint64)
}

var (
	_ objectLog = (*eventlog.Log)(nil)
	_ readModel = (*projections.Store)(nil)
)

// Config configures a Registry.
type Config struct {
	// Log is the object log. Required.
	Log *eventlog.Log
	// Store is a projection of Log that someone runs (projections.Store.Run). Required.
	Store *projections.Store
	// Catalog of the kinds served. Default builtin.Catalog().
	Catalog *kinds.Catalog
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger. Default slog.Default().
	Logger *slog.Logger
	// Sealer encrypts the objects of sealed kinds (Secrets: kinds.Kind.Sealed) before they are
	// appended and opens them when the registry reads the log (package encryption). Nil: they
	// are written in clear, which only tests and benchmarks do; cmd/logplane always sets one.
	Sealer Sealer
	// ReadTimeout bounds how long a read waits for the projection to reach a requested
	// resourceVersion before it answers 504 (too large resource version). Default 3s.
	ReadTimeout time.Duration
	// Admission is run on every create and update, as kube-apiserver's admission chain
	// (k8s.io/apiserver/pkg/admission, e.g. admission.NewChainHandler of the plug-ins of package
	// admission): after defaulting, its mutating plug-ins may change the object; after the
	// kind's validation, its validating plug-ins may refuse it (their errors are returned as
	// they are: 403 Forbidden). They see the user of the context (genericrequest.WithUser), or
	// else one made from the actor. Warnings go to k8s.io/apiserver/pkg/warning's recorder of
	// the context; audit annotations into the event. Nil: none.
	Admission admission.Interface
}

// Registry reads and writes objects. It is safe for concurrent use.
type Registry struct {
	log         objectLog
	sealer      Sealer // nil: nothing is sealed
	store       readModel
	catalog     *kinds.Catalog
	now         func() time.Time
	logger      *slog.Logger
	readTimeout time.Duration

	admission        admission.Interface
	objectInterfaces admission.ObjectInterfaces

	typeConverter managedfields.TypeConverter

	mu            sync.Mutex
	fieldManagers map[fmKey]*managedfields.FieldManager
	unabridged    bool // a test's: status writes compare whole objects (updateManagedFields)
}

type fmKey struct {
	gvk         schema.GroupVersionKind
	subresource string
}

// New returns a registry over cfg.Log and cfg.Store.
func New(cfg Config) (*Registry, error) {
	if cfg.Log == nil || cfg.Store == nil {
		return nil, errors.New("registry: config needs a Log and a Store")
	}
	if cfg.Catalog == nil {
		cfg.Catalog = builtin.Catalog()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = 3 * time.Second
	}
	var log objectLog = cfg.Log
	if cfg.Sealer != nil {
		log = openingLog{objectLog: cfg.Log, s: cfg.Sealer}
	}
	return &Registry{
		log:              log,
		sealer:           cfg.Sealer,
		store:            cfg.Store,
		catalog:          cfg.Catalog,
		now:              cfg.Now,
		logger:           cfg.Logger,
		readTimeout:      cfg.ReadTimeout,
		admission:        cfg.Admission,
		objectInterfaces: admission.NewObjectInterfacesFromScheme(kinds.Scheme),
		typeConverter:    newGoTypes(applyconfigurations.NewTypeConverter(kinds.Scheme)),
		fieldManagers:    map[fmKey]*managedfields.FieldManager{},
	}, nil
}

// Catalog returns the kinds the registry serves.
func (r *Registry) Catalog() *kinds.Catalog { return r.catalog }

// TypeConverter returns the structured-merge-diff type converter of the built-in kinds, whose
// schemas also describe them in OpenAPI.
func (r *Registry) TypeConverter() managedfields.TypeConverter { return r.typeConverter }

// Actor is who makes a change.
type Actor struct {
	Kind eventv1.ActorKind
	Name string
}

// User is an authenticated user of the API.
func User(name string) Actor { return Actor{Kind: eventv1.ActorKind_ACTOR_KIND_USER, Name: name} }

// Reconciler is a logplane reconciler, by name (scheduler, replicaset, ...).
func Reconciler(name string) Actor {
	return Actor{Kind: eventv1.ActorKind_ACTOR_KIND_RECONCILER, Name: name}
}

// Node is a node agent, by node name.
func Node(name string) Actor { return Actor{Kind: eventv1.ActorKind_ACTOR_KIND_NODE, Name: name} }

// System is logplane itself.
func System(name string) Actor { return Actor{Kind: eventv1.ActorKind_ACTOR_KIND_SYSTEM, Name: name} }

func (a Actor) proto() *eventv1.Actor { return &eventv1.Actor{Kind: a.Kind, Name: a.Name} }

// Request says who writes and why. The zero value is an anonymous user's own command.
type Request struct {
	Actor Actor
	// Cause is the sequence of the event this write reacts to; 0 for a user's own command.
	Cause uint64
	// Reason overrides the reason the registry derives (create, spec, status, metadata, ...).
	Reason string
	// FieldManager names the manager in metadata.managedFields. Default: the actor's name.
	FieldManager string
	// DryRun runs every step but the append.
	DryRun bool
	// Admit, if set, checks the object about to be written after defaulting and before
	// validation (old is nil on a create): an error refuses the write as it is. The API server
	// prevents RBAC escalation with it.
	Admit func(ctx context.Context, obj, old runtime.Object) error
}

func (q Request) manager() string {
	if q.FieldManager != "" {
		return q.FieldManager
	}
	if q.Actor.Name != "" {
		return q.Actor.Name
	}
	return "unknown"
}

// Reasons the registry writes into events.
const (
	ReasonCreate   = "create"
	ReasonSpec     = "spec"
	ReasonUpdate   = "update" // a change to a kind with no spec (ConfigMap data, ...)
	ReasonStatus   = "status"
	ReasonMetadata = "metadata"
	ReasonScale    = "scale"
	ReasonBind     = "bind"
	ReasonFinalize = "finalize"
	ReasonDelete   = "delete"
)

// FieldManager returns the managedFields manager of k's main resource ("") or a subresource.
func (r *Registry) FieldManager(k *kinds.Kind, subresource string) (*managedfields.FieldManager, error) {
	key := fmKey{k.GroupVersionKind, subresource}
	r.mu.Lock()
	fm, ok := r.fieldManagers[key]
	r.mu.Unlock()
	if ok {
		return fm, nil
	}
	reset := map[fieldpath.APIVersion]fieldpath.Filter{}
	if k.HasSubresource("status") {
		var set *fieldpath.Set
		if subresource == "status" {
			// The status strategy's reset fields: the spec, and the kind's own.
			set = fieldpath.NewSet(fieldpath.MakePathOrDie("spec"))
			for _, f := range k.Strategy.StatusResetsMetadata {
				set.Insert(fieldpath.MakePathOrDie("metadata", f))
			}
		} else if subresource == "" {
			set = fieldpath.NewSet(fieldpath.MakePathOrDie("status"))
		}
		if set != nil {
			reset[fieldpath.APIVersion(k.GroupVersion().String())] = fieldpath.NewExcludeSetFilter(set)
		}
	}
	newFieldManager, tc := managedfields.NewDefaultFieldManager, r.typeConverter
	if k.Strategy.TypeConverter != nil {
		tc = k.Strategy.TypeConverter
	}
	if k.Unstructured {
		newFieldManager = managedfields.NewDefaultCRDFieldManager
	}
	fm, err := newFieldManager(tc, r.catalog.Converter(), defaulter{k}, creater{k},
		k.GroupVersionKind, k.GroupVersion(), subresource, reset)
	if err != nil {
		return nil, fmt.Errorf("registry: field manager for %v: %w", k.GroupVersionKind, err)
	}
	r.mu.Lock()
	r.fieldManagers[key] = fm
	r.mu.Unlock()
	return fm, nil
}

// defaulter applies a kind's defaults for the field manager.
type defaulter struct{ k *kinds.Kind }

func (d defaulter) Default(obj runtime.Object) { d.k.Default(obj) }

// creater makes empty objects for the field manager: of the kind, or of the scheme.
type creater struct{ k *kinds.Kind }

func (c creater) New(gvk schema.GroupVersionKind) (runtime.Object, error) {
	if gvk == c.k.GroupVersionKind {
		return c.k.New(), nil
	}
	return kinds.Scheme.New(gvk)
}

// keyOf names an object of kind k in the log: under the resource its kind is stored as.
func keyOf(k *kinds.Kind, namespace, name string) eventlog.Key {
	st := k.Stored()
	return eventlog.Key{Group: st.Group, Resource: st.Resource, Namespace: namespace, Name: name}
}

// statusError translates log errors into Kubernetes Status errors. Errors that already are
// StatusErrors pass unchanged.
func statusError(k *kinds.Kind, name string, err error) error {
	if err == nil {
		return nil
	}
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		return err
	}
	var gr schema.GroupResource
	if k != nil {
		gr = k.GroupResource()
	}
	switch {
	case errors.Is(err, eventlog.ErrExists):
		return apierrors.NewAlreadyExists(gr, name)
	case errors.Is(err, eventlog.ErrForbidden):
		return apierrors.NewForbidden(gr, name, err)
	case errors.Is(err, eventlog.ErrConflict):
		return apierrors.NewConflict(gr, name, errors.New(optimisticLockMessage))
	case errors.Is(err, eventlog.ErrNotFound):
		return apierrors.NewNotFound(gr, name)
	case errors.Is(err, eventlog.ErrGone):
		return apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %v", err))
	case errors.Is(err, eventlog.ErrTooLarge):
		return apierrors.NewRequestEntityTooLargeError(err.Error())
	case errors.Is(err, eventlog.ErrClosed), errors.Is(err, eventlog.ErrUnavailable), errors.Is(err, eventlog.ErrUnreachable):
		return apierrors.NewServiceUnavailable(err.Error())
	case errors.Is(err, eventlog.ErrNoSpace):
		return insufficientStorage(err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return apierrors.NewTimeoutError(err.Error(), 1)
	}
	return apierrors.NewInternalError(err)
}

// insufficientStorage is 507 Insufficient Storage, for a write refused because the log's disk
// is full (apimachinery has no helper for it; the reason names it for kubectl's message).
func insufficientStorage(err error) error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status:  metav1.StatusFailure,
		Code:    http.StatusInsufficientStorage,
		Reason:  "InsufficientStorage",
		Message: strings.TrimPrefix(err.Error(), "eventlog: ") + "; reads and watches go on",
	}}
}

const optimisticLockMessage = "the object has been modified; please apply your changes to the latest version and try again"
