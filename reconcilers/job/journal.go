package job

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds/builtin"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
	"github.com/logplane/logplane/reconcilers/engine"
)

// How counting is exact without the tracking finalizer. Kubernetes puts a finalizer on every
// Job pod and counts a finished pod in three writes (its uid into
// status.uncountedTerminatedPods, the finalizer's removal, the uid into the counters) because its
// controller may never see a pod that is deleted before it is counted. Here the log has the
// pod's terminal transition, once, at a sequence: the Job's status counts exactly the terminal
// transitions of its pods up to a position of the log, which the same status write records in
// the annotation CountedThroughAnnotation. A reconcile counts the transitions after that mark
// up to the position its journal has reached, and writes the counters and the new mark in one
// write, compare-and-set on the Job's revision. The journal learns each transition as the log
// delivers it (a pod deleted before it was counted stays in the journal until it is); after a
// restart, the transitions between a Job's mark and where this process began are read back
// from the log (Replay), so none is lost and none counted twice.

// CountedThroughAnnotation is the position of the log up to which a Job's status counts its
// pods' terminal transitions. The Job reconciler writes it with the status; users cannot set
// or change it (the Job strategy keeps it).
const CountedThroughAnnotation = builtin.JobCountedThroughAnnotation

func countedThrough(j *batchv1.Job) uint64 {
	v, err := strconv.ParseUint(j.Annotations[CountedThroughAnnotation], 10, 64)
	if err != nil {
		return 0
	}
	return v
}

// transition is a pod's terminal transition: the sequence of the revision in which it
// finished, and the pod as last seen (its last revision, if it is gone).
type transition struct {
	seq  uint64
	last uint64 // the sequence of pod
	pod  *corev1.Pod
	gone bool
}

// journal holds, per Job (by uid), the terminal transitions of its pods that its status may not
// have counted yet.
type journal struct {
	mu   sync.Mutex
	pos  uint64 // every pod event up to here has been delivered (since the engine subscribed)
	jobs map[types.UID]*jobJournal
}

type jobJournal struct {
	pods   map[types.UID]*transition
	pruned uint64 // the mark the entries were last pruned at
	// complete: every transition after the Job's mark is in, up to max(pos, upTo): the Job was
	// created while the engine was subscribed, or the log was read back up to upTo.
	complete bool
	upTo     uint64
	// start: the start time given to the Job's status, not written yet; write: when its
	// status was last written (zero: not by this process).
	start, write time.Time
}

func newJournal() *journal {
	return &journal{jobs: map[types.UID]*jobJournal{}}
}

func (jl *journal) job(uid types.UID) *jobJournal {
	jj := jl.jobs[uid]
	if jj == nil {
		jj = &jobJournal{pods: map[types.UID]*transition{}}
		jl.jobs[uid] = jj
	}
	return jj
}

// observe records a pod's revision at seq (pod nil: deleted; last is then its last revision).
// was and finished are whether the revision before and this one are finished for its Job.
func (jl *journal) observe(seq uint64, job types.UID, uid types.UID, pod, last *corev1.Pod, was, finished bool, mark uint64) {
	jl.mu.Lock()
	defer jl.mu.Unlock()
	jj := jl.job(job)
	if mark > jj.pruned {
		jj.prune(mark)
	}
	t := jj.pods[uid]
	switch {
	case t != nil && pod != nil:
		if seq >= t.last {
			t.pod, t.last = pod, seq
		}
	case t != nil:
		t.gone = true
	case pod == nil && last != nil && !finished && seq > mark:
		// Removed before it finished (deleted with no grace, say): a failure, as on Kubernetes.
		jj.pods[uid] = &transition{seq: seq, last: seq, pod: last, gone: true}
	case pod != nil && !was && finished && seq > mark:
		jj.pods[uid] = &transition{seq: seq, last: seq, pod: pod}
	}
}

// started returns the start time to give a Job whose status has none: the one given before,
// if its write waits, else now.
func (jl *journal) started(job types.UID, now time.Time) time.Time {
	jl.mu.Lock()
	defer jl.mu.Unlock()
	jj := jl.job(job)
	if jj.start.IsZero() {
		jj.start = now
	}
	return jj.start
}

// wrote notes that the Job's status was written at t (with a start time, which it then
// holds); written returns when it last was (else when this process gave it its start time,
// else created).
func (jl *journal) wrote(job types.UID, t time.Time, started bool) {
	jl.mu.Lock()
	defer jl.mu.Unlock()
	jj := jl.job(job)
	jj.write = t
	if started {
		jj.start = time.Time{}
	}
}

func (jl *journal) written(job types.UID, created time.Time) time.Time {
	jl.mu.Lock()
	defer jl.mu.Unlock()
	jj := jl.jobs[job]
	switch {
	case jj != nil && !jj.write.IsZero():
		return jj.write
	case jj != nil && !jj.start.IsZero():
		return jj.start
	}
	return created
}

// delivered advances the position every pod event up to which has been observed.
func (jl *journal) delivered(seq uint64) {
	jl.mu.Lock()
	jl.pos = max(jl.pos, seq)
	jl.mu.Unlock()
}

// prune drops what a status counting through mark has counted, gone pods included. Entries
// go only once the Job's revision in the index counts them (observe and since are given its
// mark): a reconcile that reads an older revision (its own write not applied yet) still finds
// them.
func (jj *jobJournal) prune(mark uint64) {
	for uid, t := range jj.pods {
		if t.seq <= mark {
			delete(jj.pods, uid)
		}
	}
	jj.pruned = mark
}

// forget drops a Job's entries (it is gone).
func (jl *journal) forget(job types.UID) {
	jl.mu.Lock()
	defer jl.mu.Unlock()
	delete(jl.jobs, job)
}

// since returns the position a status written now counts through, and the transitions of a
// Job's pods after mark up to it; ok is false until the journal holds every transition after
// the mark (replay has not read the log back yet).
func (jl *journal) since(job types.UID, mark uint64) (pos uint64, out map[types.UID]*transition, ok bool) {
	jl.mu.Lock()
	defer jl.mu.Unlock()
	jj := jl.jobs[job]
	if jj == nil || !jj.complete {
		return 0, nil, false
	}
	if mark > jj.pruned {
		jj.prune(mark)
	}
	pos = max(jl.pos, jj.upTo, mark)
	out = map[types.UID]*transition{}
	for uid, t := range jj.pods {
		if t.seq > mark && t.seq <= pos {
			out[uid] = &transition{seq: t.seq, pod: t.pod, gone: t.gone}
		}
	}
	return pos, out, true
}

// podChanged keeps the journal of the pod's Job (and lowers its expectations when the pod
// appeared). (The engine queues the Job, as Owns.)
func (c *Controller) podChanged(ev engine.Event) []eventlog.Key {
	defer c.journal.delivered(ev.Seq)
	var ref *metav1.OwnerReference
	switch {
	case ev.NewMeta != nil:
		ref = ev.NewMeta.Controller()
	case ev.OldMeta != nil:
		ref = ev.OldMeta.Controller()
	default:
		// The index had this revision already (it loaded while the engine subscribed): the
		// pod itself says who controls it.
		if p, ok := c.decodePod(ev.Object().Event); ok {
			ref = metav1.GetControllerOfNoCopy(p)
		}
	}
	if ref == nil || ref.Kind != "Job" {
		return nil
	}
	jobKey := eventlog.Key{Group: jobsResource.Group, Resource: jobsResource.Resource, Namespace: ev.Object().Key.Namespace, Name: ref.Name}
	if ev.OldMeta == nil && ev.NewMeta != nil {
		c.exp.CreationObserved(jobKey)
	}
	obj, ok := c.ix.Object(jobKey)
	if !ok {
		return nil
	}
	j, ok := obj.(*batchv1.Job)
	if !ok || j.UID != ref.UID {
		return nil
	}
	var pod, last *corev1.Pod
	if ev.New != nil {
		if o, found := c.ix.Object(ev.New.Key); found {
			pod, _ = o.(*corev1.Pod)
		}
		if pod == nil {
			if pod, ok = c.decodePod(ev.New.Event); !ok {
				return nil
			}
		}
		last = pod
	} else if last, ok = c.decodePod(ev.Old.Event); !ok {
		return nil
	}
	c.journal.observe(ev.Seq, j.UID, last.UID, pod, last, c.wasFinished(ev, j), isFinished(last, j), countedThrough(j))
	return nil
}

// wasFinished reports whether the pod's revision before the change was finished for j.
func (c *Controller) wasFinished(ev engine.Event, j *batchv1.Job) bool {
	if ev.Old == nil {
		return false
	}
	switch corev1.PodPhase(ev.Old.Fields["status.phase"]) {
	case corev1.PodSucceeded, corev1.PodFailed:
		return true
	}
	if onlyReplaceFailed(j) {
		return false
	}
	if ev.OldMeta != nil {
		return ev.OldMeta.Deleting
	}
	p, ok := c.decodePod(ev.Old.Event)
	return ok && p.DeletionTimestamp != nil
}

// jobChanged notes the Jobs created while the engine is subscribed (every event of their pods
// reaches the journal), and forgets deleted ones.
func (c *Controller) jobChanged(ev engine.Event) []eventlog.Key {
	switch {
	case ev.Type == eventv1.ChangeType_CHANGE_TYPE_ADDED && ev.NewMeta != nil:
		c.journal.mu.Lock()
		c.journal.job(ev.NewMeta.UID).complete = true
		c.journal.mu.Unlock()
	case ev.New == nil && ev.OldMeta != nil:
		c.journal.forget(ev.OldMeta.UID)
	case ev.New == nil && ev.Old != nil:
		if obj, err := ev.Old.Decode(); err == nil {
			if j, ok := obj.(*batchv1.Job); ok {
				c.journal.forget(j.UID)
			}
		}
	}
	return nil
}

// replay reads back from the log, once per process, the terminal transitions of a Job's pods
// since its mark (or its creation) that the journal has not had delivered: those before the
// engine subscribed.
func (c *Controller) replay(ctx context.Context, j *batchv1.Job) error {
	c.journal.mu.Lock()
	complete := c.journal.job(j.UID).complete
	c.journal.mu.Unlock()
	if complete {
		return nil
	}
	// Every event after upTo is delivered (the engine subscribed before reconciling).
	upTo := c.store.Applied()
	mark := countedThrough(j)
	if mark == 0 && countedByFinalizers(j, c.podsOf(j)) {
		c.adoptFinalizerCounts(j, upTo)
		return nil
	}
	if mark == 0 {
		// Never counted: from the Job's creation.
		hist, err := c.w.History(ctx, c.jobs, j.Namespace, j.Name)
		if err != nil {
			return fmt.Errorf("job: history of %s/%s: %w", j.Namespace, j.Name, err)
		}
		for _, r := range hist {
			if r.Event.GetType() == eventv1.ChangeType_CHANGE_TYPE_ADDED && r.Event.GetRef().GetUid() == string(j.UID) {
				mark = r.Seq
			}
		}
	}
	was := map[types.UID]bool{} // per pod replayed, whether its previous revision was finished
	err := c.w.Replay(ctx, eventlog.Filter{Resource: podsResource.Resource, Namespace: j.Namespace}, mark, upTo, func(r eventlog.Record) error {
		if r.Err != nil || r.Event == nil {
			return nil // unreadable: its object's other revisions tell
		}
		p, ok := c.decodePod(r.Event)
		if !ok || !isControlledBy(p, j.UID) {
			return nil
		}
		finished := isFinished(p, j)
		before, seen := was[p.UID]
		if !seen && r.Event.GetType() != eventv1.ChangeType_CHANGE_TYPE_ADDED {
			// Its revision at the mark (finished then: counted then).
			at, err := c.w.At(ctx, eventlog.KeyOf(r.Event), mark)
			if err != nil && !isNotFound(err) {
				return err
			}
			if err == nil && at.Event.GetType() != eventv1.ChangeType_CHANGE_TYPE_DELETED {
				op, ok := c.decodePod(at.Event)
				before = ok && op.UID == p.UID && isFinished(op, j)
			}
		}
		was[p.UID] = finished
		cur := p
		if r.Event.GetType() == eventv1.ChangeType_CHANGE_TYPE_DELETED {
			cur = nil
		}
		c.journal.observe(r.Seq, j.UID, p.UID, cur, p, before, finished, mark)
		return nil
	})
	if errors.Is(err, eventlog.ErrGone) {
		c.log.Warn("job: the log no longer holds the pods' revisions since the Job last counted them; those deleted since are not counted",
			"job", j.Namespace+"/"+j.Name, "since", mark)
		err = nil
	}
	if err != nil {
		return fmt.Errorf("job: reading back the pods of %s/%s: %w", j.Namespace, j.Name, err)
	}
	c.journal.mu.Lock()
	jj := c.journal.job(j.UID)
	jj.complete, jj.upTo = true, upTo
	c.journal.mu.Unlock()
	return nil
}

func (c *Controller) decodePod(ev *eventv1.ObjectChanged) (*corev1.Pod, bool) {
	obj, err := c.pods.Decode(ev.GetEncoding(), ev.GetObject())
	if err != nil {
		return nil, false
	}
	p, ok := obj.(*corev1.Pod)
	return p, ok
}

// countedByFinalizers: the Job was counted by the tracking-finalizer protocol of logplane
// before counting went by the log (it has counts or uids in flight, or pods with the finalizer,
// and no mark).
func countedByFinalizers(j *batchv1.Job, pods []*corev1.Pod) bool {
	if u := j.Status.UncountedTerminatedPods; u != nil && len(u.Succeeded)+len(u.Failed) > 0 {
		return true
	}
	if j.Status.Succeeded+j.Status.Failed > 0 {
		return true
	}
	return slices.ContainsFunc(pods, hasTracking)
}

// adoptFinalizerCounts takes over a Job counted by the tracking-finalizer protocol: its
// counters hold every finished pod without the finalizer, or gone, but for the uids of
// uncountedTerminatedPods; those, and the finished pods that still carry the finalizer, are
// the transitions to count now (at upTo, which the next status write takes as its mark).
func (c *Controller) adoptFinalizerCounts(j *batchv1.Job, upTo uint64) {
	inFlight := map[types.UID]corev1.PodPhase{}
	if u := j.Status.UncountedTerminatedPods; u != nil {
		for _, uid := range u.Succeeded {
			inFlight[uid] = corev1.PodSucceeded
		}
		for _, uid := range u.Failed {
			inFlight[uid] = corev1.PodFailed
		}
	}
	c.journal.mu.Lock()
	defer c.journal.mu.Unlock()
	jj := c.journal.job(j.UID)
	for _, p := range c.podsOf(j) {
		_, flying := inFlight[p.UID]
		if isFinished(p, j) && (flying || hasTracking(p)) {
			jj.pods[p.UID] = &transition{seq: upTo, last: upTo, pod: p}
		}
		delete(inFlight, p.UID)
	}
	for uid, phase := range inFlight { // gone: counted now, as its list says
		jj.pods[uid] = &transition{seq: upTo, last: upTo, gone: true,
			pod: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: uid}, Status: corev1.PodStatus{Phase: phase}}}
	}
	jj.complete, jj.upTo = true, upTo
}

func isControlledBy(p *corev1.Pod, uid types.UID) bool {
	ref := metav1.GetControllerOfNoCopy(p)
	return ref != nil && ref.UID == uid
}

func isNotFound(err error) bool {
	return apierrors.IsNotFound(err) || errors.Is(err, eventlog.ErrNotFound)
}
