// Package job is the reconciler of Jobs, as the job controller of kube-controller-manager
// (pkg/controller/job) with its TTL-after-finished controller: it keeps as many pods running as
// parallelism and the remaining completions allow, counts each pod's success or failure exactly
// once (pods carry the batch.kubernetes.io/job-tracking finalizer until the Job's status has
// counted them, through status.uncountedTerminatedPods, as Kubernetes does), backs off
// exponentially after failures, fails the Job past its backoffLimit, its activeDeadlineSeconds
// or a FailJob rule of its podFailurePolicy, replaces pods being deleted at once or once they
// have failed (podReplacementPolicy), suspends and resumes it, runs Indexed Jobs (one pod per
// completion index, JOB_COMPLETION_INDEX, the completion-index annotation and label, the
// hostname <job>-<index>; backoffLimitPerIndex, maxFailedIndexes and FailIndex rules;
// successPolicy), reports status (active, ready, terminating, succeeded, failed,
// completedIndexes, failedIndexes, startTime, completionTime, the conditions
// SuccessCriteriaMet, Complete, FailureTarget, Failed and Suspended) and deletes a finished Job
// once its ttlSecondsAfterFinished has passed.
package job

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/expectations"
	"github.com/logplane/logplane/reconcilers/informer"
	"github.com/logplane/logplane/registry"
)

// Name of the reconciler, as the actor of its writes.
const Name = "job"

var (
	podsResource = schema.GroupResource{Resource: "pods"}
	jobsResource = schema.GroupResource{Group: "batch", Resource: "jobs"}
)

// Back-off after pod failures, as Kubernetes' DefaultJobPodFailureBackOff and
// MaxJobPodFailureBackOff.
const (
	DefaultPodFailureBackOff = 10 * time.Second
	MaxPodFailureBackOff     = 10 * time.Minute
)

// EventRecorder records Kubernetes Events; *recorder.Recorder is one.
type EventRecorder interface {
	Eventf(obj runtime.Object, cause uint64, eventtype, reason, format string, args ...any)
}

// writer is what the reconciler needs of the registry.
type writer interface {
	Create(ctx context.Context, k *kinds.Kind, obj runtime.Object, req registry.Request) (runtime.Object, error)
	Modify(ctx context.Context, k *kinds.Kind, ns, name string, req registry.Request, opts registry.UpdateOptions, mutate registry.Mutation) (runtime.Object, error)
	Delete(ctx context.Context, k *kinds.Kind, ns, name string, opts metav1.DeleteOptions, req registry.Request) (runtime.Object, bool, error)
	History(ctx context.Context, k *kinds.Kind, ns, name string) ([]eventlog.Record, error)
	At(ctx context.Context, key eventlog.Key, seq uint64) (eventlog.Record, error)
	Replay(ctx context.Context, f eventlog.Filter, after, upTo uint64, fn func(eventlog.Record) error) error
}

var _ writer = (*registry.Registry)(nil)

// Config configures the reconciler.
type Config struct {
	// Workers reconciling Jobs. Default 16: a reconcile mostly waits for the log's appends.
	Workers int
	// BackOff is the delay after a Job's first pod failure, doubled at each further failure up
	// to MaxBackOff. Defaults DefaultPodFailureBackOff and MaxPodFailureBackOff.
	BackOff, MaxBackOff time.Duration
	// Burst bounds the pods created by one reconcile. Default 500, as kube-controller-manager.
	Burst int
}

// Controller is the Job reconciler.
type Controller struct {
	cfg    Config
	w      writer
	ix     *informer.Index
	now    func() time.Time
	pods   *kinds.Kind
	jobs   *kinds.Kind
	events EventRecorder
	log    *slog.Logger
	exp    *expectations.Expectations // Job → creations asked for, not yet observed
	// journal: the terminal transitions of the Jobs' pods not counted yet; store: the
	// projection the engine follows (its position bounds what replay reads back).
	journal *journal
	store   interface{ Applied() uint64 }
}

// Setup is the reconciler's line in the list of reconcilers (package sets).
func Setup(cfg Config) engine.Setup { return engine.SetupOf(New, cfg) }

// New registers the Job reconciler on e, with the recorder of its Events (component
// "job-controller").
func New(e *engine.Engine, cfg Config) (*Controller, error) {
	ks, err := e.Kinds(podsResource, jobsResource)
	if err != nil {
		return nil, fmt.Errorf("job: %w", err)
	}
	if cfg.BackOff <= 0 {
		cfg.BackOff = DefaultPodFailureBackOff
	}
	if cfg.MaxBackOff <= 0 {
		cfg.MaxBackOff = MaxPodFailureBackOff
	}
	if cfg.Burst <= 0 {
		cfg.Burst = 500
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 16
	}
	rec, err := e.EventRecorder(Name, "job-controller")
	if err != nil {
		return nil, err
	}
	c := &Controller{cfg: cfg, w: e.Registry(), ix: e.Index(), now: e.Clock().Now, pods: ks[0], jobs: ks[1],
		events: rec, log: e.Logger(), exp: expectations.New(e.Clock()), journal: newJournal(), store: e.Store()}
	e.Register(engine.Registration{
		Name:       Name,
		For:        jobsResource,
		Owns:       []schema.GroupResource{podsResource},
		Watches:    []engine.Watch{engine.Watches(podsResource, c.podChanged), engine.Watches(jobsResource, c.jobChanged)},
		Workers:    cfg.Workers,
		Reconciler: engine.ReconcilerFunc(c.reconcile),
	})
	return c, nil
}
