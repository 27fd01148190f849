// Package logcheck reads a whole object log and says what is wrong with it, and repairs what it
// found by appending: it never rewrites or deletes anything. Check verifies that every event
// decodes (the envelope, and the object it carries when its kind is known), that every subject's
// chain of revisions is consistent (an object is added before it is modified or deleted, not
// added twice while live, and keeps its uid while it lives), that no sequence is missing, and that
// every snapshot of the projection equals a replay of the log up to its sequence. Repair appends,
// with the actor system/log-repair and the reason "repair" so that history shows it, the last
// readable revision again after an unreadable one (or a tombstone when there is none), and the
// snapshot's revision of an object whose events were purged from the log (or a tombstone).
//
// cmd/logplane's `log check` and `log repair` are its users.
package logcheck

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/projections"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// Problem names a kind of finding.
type Problem string

// The problems Check reports.
const (
	// Undecodable: a message on an object's subject that is no readable event.
	Undecodable Problem = "undecodable"
	// UndecodableObject: the envelope reads, the object it carries does not.
	UndecodableObject Problem = "undecodable-object"
	// Chain: a revision that does not follow from the one before on its subject.
	Chain Problem = "chain"
	// Missing: sequences absent from the log (purged or deleted from the stream).
	Missing Problem = "missing"
	// Snapshot: a snapshot that differs from a replay of the log up to its sequence.
	Snapshot Problem = "snapshot"
	// Purged: an object that the newest snapshot holds and the log no longer has: a restart
	// serves it, stale, with no tombstone.
	Purged Problem = "purged"
	// UnreadableTail: an object whose latest message is unreadable (its state is taken from the
	// revision before; see eventlog.Record.Stale).
	UnreadableTail Problem = "unreadable-tail"
)

// Finding is one thing Check found.
type Finding struct {
	Problem Problem
	Seq     uint64       // the sequence it is about (0 if none)
	Key     eventlog.Key // the object it is about (zero if unknown)
	Detail  string
	// Repair says what Repair appends for it; empty when nothing is appended (reported only).
	Repair string

	fix   *fix
	until uint64 // a Missing range's last sequence
}

// fix is an append Repair makes.
type fix struct {
	ev     *eventv1.ObjectChanged
	expect uint64
	// alt is appended instead of ev under Options.PurgedAsDeleted.
	alt *eventv1.ObjectChanged
}

// Report is what Check read and found.
type Report struct {
	First, Last uint64 // the sequences the log holds
	Events      uint64 // events read
	Keys        int    // subjects seen
	Live        int    // objects live at the end
	Snapshots   int    // snapshots compared with the replay
	Objects     uint64 // objects decoded (of known kinds)
	Findings    []Finding
	// Repaired are findings that a repair event already answers (an unreadable message or a
	// purged revision named as its cause by an event of log repair): history keeps them, nothing
	// is left to do.
	Repaired []Finding
	Took     time.Duration
}

// OK reports whether Check found nothing left to do.
func (r *Report) OK() bool { return len(r.Findings) == 0 }

// Options of Check and Repair.
type Options struct {
	// Catalog decodes objects of the kinds it knows; nil: only envelopes are checked.
	Catalog *kinds.Catalog
	// Projection whose snapshots are compared. Default "objects".
	Projection string
	// PurgedAsDeleted makes Repair append a tombstone for a purged object instead of its last
	// known revision.
	PurgedAsDeleted bool
	Logger          *slog.Logger
	// Now for the time of repair events. Default time.Now.
	Now func() time.Time
}

// keyState is what Check keeps of a subject while replaying.
//
// It holds no event: the events alias their messages' buffers, and keeping one per subject would
// keep the whole log in memory. The strings it holds are copies for the same reason.
type keyState struct {
	live     bool
	uid      string
	seq      uint64 // the latest message's sequence
	goodSeq  uint64 // the latest readable revision's (0: none)
	badTail  bool   // the latest message is unreadable
	badError error
	snap     uint64 // the sequence of the last snapshot found to hold the key
}

// stateOf returns the state of key, made with copies of its strings if new.
func stateOf(keys map[eventlog.Key]*keyState, key eventlog.Key) *keyState {
	ks := keys[key]
	if ks == nil {
		ks = &keyState{}
		key = eventlog.Key{Group: strings.Clone(key.Group), Resource: strings.Clone(key.Resource),
			Namespace: strings.Clone(key.Namespace), Name: strings.Clone(key.Name)}
		keys[key] = ks
	}
	return ks
}

// Check reads the whole log and reports what it finds. It returns an error only when the log
// cannot be read.
func Check(ctx context.Context, l *eventlog.Log, opts Options) (*Report, error) {
	opts.defaults()
	start := time.Now()
	rep := &Report{}
	first, last, err := l.Bounds(ctx)
	if err != nil {
		return nil, err
	}
	rep.First, rep.Last = first, last
	snaps, err := l.Snapshots(ctx, opts.Projection)
	if err != nil {
		return nil, err
	}
	sort.Slice(snaps, func(i, j int) bool { return snaps[i].Seq < snaps[j].Seq })
	rep.Snapshots = len(snaps)

	keys := map[eventlog.Key]*keyState{}
	causes := map[uint64]bool{}      // sequences that repair events name as their cause
	missing := map[uint64]bool{}     // sequences the log lacks, for purged snapshots' objects
	var newest []*projections.Object // the newest snapshot's objects that a replay had not live there
	var newestSeq uint64
	prev := first - 1
	next := 0 // the next snapshot to compare
	compare := func(upTo uint64) error {
		for next < len(snaps) && snaps[next].Seq <= upTo {
			info := snaps[next]
			found, gone, err := scanSnapshot(ctx, l, opts, info, keys, missing)
			if err != nil {
				rep.add(Finding{Problem: Snapshot, Seq: info.Seq, Detail: fmt.Sprintf("snapshot %s/%d cannot be read (a restart skips it): %v", opts.Projection, info.Seq, err)})
			} else {
				rep.Findings = append(rep.Findings, found...)
				newest, newestSeq = gone, info.Seq
			}
			next++
		}
		return nil
	}
	if first > 1 {
		// Retention dropped the start: snapshots older than the first kept event cannot be
		// compared with a replay.
		for next < len(snaps) && snaps[next].Seq < first {
			next++
		}
	}
	var decoder *objectDecoder
	if opts.Catalog != nil {
		decoder = newObjectDecoder(opts.Catalog)
		defer decoder.close()
	}
	err = l.Replay(ctx, eventlog.Filter{}, first-1, last, func(r eventlog.Record) error {
		if r.Seq != prev+1 {
			rep.add(Finding{Problem: Missing, Seq: prev + 1, until: r.Seq - 1, Detail: fmt.Sprintf("sequences %d to %d are not in the log (purged or deleted from the stream)", prev+1, r.Seq-1)})
			for s := prev + 1; s < r.Seq && len(missing) < 1<<20; s++ {
				missing[s] = true
			}
		}
		if err := compare(r.Seq - 1); err != nil {
			return err
		}
		prev = r.Seq
		rep.Events++
		if r.Err != nil {
			key, ok := r.Key()
			if !ok {
				rep.add(Finding{Problem: Undecodable, Seq: r.Seq, Detail: fmt.Sprintf("on %s, not an object's subject: %v", r.Subject, r.Err)})
				return nil
			}
			ks := stateOf(keys, key)
			ks.seq, ks.badTail, ks.badError = r.Seq, true, r.Err
			rep.add(Finding{Problem: Undecodable, Seq: r.Seq, Key: key, Detail: r.Err.Error()})
			return nil
		}
		ev := r.Event
		key := eventlog.KeyOf(ev)
		ks := stateOf(keys, key)
		uid := ev.GetRef().GetUid()
		repair := ev.GetReason() == ReasonRepair
		if repair && ev.GetCause() != 0 {
			causes[ev.GetCause()] = true
		}
		switch ev.GetType() {
		case eventv1.ChangeType_CHANGE_TYPE_ADDED:
			if ks.live && !repair {
				rep.add(Finding{Problem: Chain, Seq: r.Seq, Key: key, Detail: fmt.Sprintf("added while live since %d", ks.goodSeq)})
			}
			ks.live = true
		case eventv1.ChangeType_CHANGE_TYPE_MODIFIED:
			if !ks.live && !repair {
				rep.add(Finding{Problem: Chain, Seq: r.Seq, Key: key, Detail: "modified while not live (never added, or deleted before)"})
			} else if ks.live && ks.uid != "" && uid != "" && uid != ks.uid {
				rep.add(Finding{Problem: Chain, Seq: r.Seq, Key: key, Detail: fmt.Sprintf("uid changed from %s to %s without a deletion", ks.uid, uid)})
			}
			ks.live = true
		case eventv1.ChangeType_CHANGE_TYPE_DELETED:
			if !ks.live && !repair {
				rep.add(Finding{Problem: Chain, Seq: r.Seq, Key: key, Detail: "deleted while not live"})
			}
			ks.live = false
		}
		if uid != ks.uid {
			ks.uid = strings.Clone(uid)
		}
		ks.seq, ks.goodSeq, ks.badTail, ks.badError = r.Seq, r.Seq, false, nil
		if decoder != nil {
			decoder.check(rep, r.Seq, key, ev)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("logcheck: reading the log: %w", err)
	}
	if decoder != nil {
		decoder.wait(rep)
	}
	if err := compare(last); err != nil {
		return nil, err
	}
	if prev < last {
		rep.add(Finding{Problem: Missing, Seq: prev + 1, Detail: fmt.Sprintf("sequences %d to %d are not in the log", prev+1, last)})
	}
	rep.Keys = len(keys)
	for key, ks := range keys {
		if ks.live && !ks.badTail {
			rep.Live++
		}
		if ks.badTail {
			f, err := unreadableTail(ctx, l, opts, key, ks)
			if err != nil {
				return nil, err
			}
			rep.add(f)
		}
	}
	if newest != nil {
		purged(rep, opts, newest, newestSeq, keys)
	}
	rep.settle(causes)
	rep.Took = time.Since(start)
	return rep, nil
}

// ReasonRepair is the reason of the events Repair appends.
const ReasonRepair = "repair"

// RepairActor is the actor of the events Repair appends.
var RepairActor = &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_SYSTEM, Name: "log-repair"}

func (o *Options) defaults() {
	if o.Projection == "" {
		o.Projection = "objects"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

func (r *Report) add(f Finding) { r.Findings = append(r.Findings, f) }

// settle moves the findings that repair events answer to Repaired, and sorts both by sequence.
func (r *Report) settle(causes map[uint64]bool) {
	answered := func(f Finding) bool {
		switch f.Problem {
		case Undecodable, Snapshot:
			return causes[f.Seq] || (f.Problem == Snapshot && f.fix == nil && causes[f.snapshotRevision()])
		case Missing:
			for c := range causes {
				if c >= f.Seq && c <= f.until {
					return true
				}
			}
		}
		return false
	}
	var open []Finding
	for _, f := range r.Findings {
		if answered(f) {
			r.Repaired = append(r.Repaired, f)
		} else {
			open = append(open, f)
		}
	}
	r.Findings = open
	for _, fs := range [][]Finding{r.Findings, r.Repaired} {
		sort.SliceStable(fs, func(i, j int) bool { return fs[i].Seq < fs[j].Seq })
	}
}

// unreadableTail is the finding for a key whose latest message is unreadable, with its repair:
// the last readable revision again (a live object lives on as it was) or, with none, a tombstone.
func unreadableTail(ctx context.Context, l *eventlog.Log, opts Options, key eventlog.Key, ks *keyState) (Finding, error) {
	f := Finding{Problem: UnreadableTail, Seq: ks.seq, Key: key}
	var good *eventv1.ObjectChanged
	if ks.goodSeq > 0 {
		h, err := l.History(ctx, key)
		if err != nil {
			return Finding{}, fmt.Errorf("logcheck: %w", err)
		}
		for _, r := range h {
			if r.Seq == ks.goodSeq && r.Err == nil {
				good = r.Event
			}
		}
	}
	if good == nil {
		f.Detail = "its only messages are unreadable"
		f.Repair = "append a tombstone"
		f.fix = &fix{ev: repairEvent(opts, tombstoneFor(opts, key), ks.seq), expect: ks.seq}
		return f, nil
	}
	f.Detail = fmt.Sprintf("its latest message is unreadable; its last readable revision is %d", ks.goodSeq)
	ev := repairEvent(opts, good, ks.seq)
	if ev.Type == eventv1.ChangeType_CHANGE_TYPE_ADDED {
		ev.Type = eventv1.ChangeType_CHANGE_TYPE_MODIFIED
	}
	f.Repair = fmt.Sprintf("append revision %d again", ks.goodSeq)
	if ev.Type == eventv1.ChangeType_CHANGE_TYPE_DELETED {
		f.Repair = fmt.Sprintf("append the tombstone of %d again", ks.goodSeq)
	}
	f.fix = &fix{ev: ev, expect: ks.seq}
	return f, nil
}

// repairEvent is a copy of ev written by the repair, caused by the sequence it repairs.
func repairEvent(opts Options, ev *eventv1.ObjectChanged, cause uint64) *eventv1.ObjectChanged {
	out := &eventv1.ObjectChanged{
		Type:     ev.GetType(),
		Reason:   ReasonRepair,
		Actor:    RepairActor,
		Cause:    cause,
		Time:     timestamp(opts.Now()),
		Ref:      ev.GetRef(),
		Encoding: ev.GetEncoding(),
		Object:   ev.GetObject(),
		Labels:   ev.GetLabels(),
		Fields:   ev.GetFields(),
	}
	return out
}

// tombstoneFor is a deletion of key carrying no object (none could be read).
func tombstoneFor(opts Options, key eventlog.Key) *eventv1.ObjectChanged {
	ref := &eventv1.ObjectRef{Group: key.Group, Resource: key.Resource, Namespace: key.Namespace, Name: key.Name}
	if opts.Catalog != nil {
		if k, ok := opts.Catalog.ByGroupResource(schema.GroupResource{Group: key.Group, Resource: key.Resource}); ok {
			ref.Version, ref.Kind = k.Version, k.Kind
		}
	}
	return &eventv1.ObjectChanged{Type: eventv1.ChangeType_CHANGE_TYPE_DELETED, Ref: ref}
}

// scanSnapshot compares the snapshot info names with the replay's state at its sequence (keys
// and missing as they are there), reading it object by object rather than into a store (a store
// of a million objects is a gigabyte and more). It returns what it found, and the objects the
// snapshot holds that the replay has no live revision of (what purged looks at), or an error if
// the snapshot cannot be read, as a restart would find it.
func scanSnapshot(ctx context.Context, l *eventlog.Log, opts Options, info eventlog.SnapshotInfo, keys map[eventlog.Key]*keyState, missing map[uint64]bool) ([]Finding, []*projections.Object, error) {
	rc, err := l.OpenSnapshot(ctx, info)
	if err != nil {
		return nil, nil, err
	}
	defer rc.Close()
	seq := info.Seq
	var found []Finding
	var gone []*projections.Object
	foreign := map[eventlog.Key]bool{} // keys the replay does not have, to find them twice
	held := 0                          // live keys the snapshot holds
	_, err = projections.ScanSnapshot(rc, opts.Projection, func(o *projections.Object) error {
		ks := keys[o.Key]
		switch {
		case ks != nil && ks.snap == seq, ks == nil && foreign[o.Key]:
			return fmt.Errorf("projections: snapshot holds %s twice", o.Key)
		case ks != nil:
			ks.snap = seq
			if ks.live {
				held++
			}
		default:
			foreign[o.Key] = true
		}
		switch {
		case missing[o.Seq] && (ks == nil || !ks.live):
			found = append(found, Finding{Problem: Snapshot, Seq: seq, Key: o.Key, until: o.Seq, Detail: fmt.Sprintf("snapshot %d holds revision %d, which is no longer in the log (purged)", seq, o.Seq)})
		case ks == nil || (!ks.live && !ks.badTail):
			found = append(found, Finding{Problem: Snapshot, Seq: seq, Key: o.Key, Detail: fmt.Sprintf("snapshot %d holds revision %d of an object that a replay does not have", seq, o.Seq)})
		case ks.seq != o.Seq:
			found = append(found, Finding{Problem: Snapshot, Seq: seq, Key: o.Key, Detail: fmt.Sprintf("snapshot %d holds revision %d, a replay has %d", seq, o.Seq, ks.seq)})
		}
		if ks == nil || (!ks.live && !ks.badTail) {
			gone = append(gone, o)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	live := 0
	for _, ks := range keys {
		if ks.live {
			live++
		}
	}
	if held < live {
		for key, ks := range keys {
			if ks.live && ks.snap != seq {
				found = append(found, Finding{Problem: Snapshot, Seq: seq, Key: key, Detail: fmt.Sprintf("snapshot %d lacks the object, live at %d in a replay", seq, ks.seq)})
			}
		}
	}
	return found, gone, nil
}

// purged finds, among objs (the newest snapshot's objects that the replay had not live there),
// those the log has no live revision of and no event after the snapshot: a restart serves them,
// stale.
func purged(rep *Report, opts Options, objs []*projections.Object, seq uint64, keys map[eventlog.Key]*keyState) {
	for _, o := range objs {
		ks := keys[o.Key]
		if ks != nil && (ks.live || ks.badTail || ks.seq > seq) {
			continue
		}
		var expect uint64
		if ks != nil {
			expect = ks.seq
		}
		restore := repairEvent(opts, o.Event, o.Seq)
		restore.Type = eventv1.ChangeType_CHANGE_TYPE_ADDED
		tomb := repairEvent(opts, o.Event, o.Seq)
		tomb.Type = eventv1.ChangeType_CHANGE_TYPE_DELETED
		f := Finding{Problem: Purged, Seq: o.Seq, Key: o.Key,
			Detail: fmt.Sprintf("the newest snapshot (%d) holds revision %d, which the log no longer has: a restart serves it with no tombstone", seq, o.Seq),
			Repair: fmt.Sprintf("append revision %d again (or a tombstone with --purged=delete)", o.Seq),
			fix:    &fix{ev: restore, alt: tomb, expect: expect}}
		if opts.PurgedAsDeleted {
			f.Repair = fmt.Sprintf("append a tombstone carrying revision %d", o.Seq)
		}
		rep.add(f)
	}
}

// snapshotRevision is the purged revision a Snapshot finding is about (0 if none).
func (f Finding) snapshotRevision() uint64 { return f.until }

// Repaired is one append Repair made (or would make, on a dry run).
type Repaired struct {
	Finding Finding
	Seq     uint64 // the appended event's sequence; 0 on a dry run or when skipped
	Err     error  // why it was not appended
}

// Repair appends what the report's findings need. A repair whose key changed since the check
// (someone wrote it: the unreadable message is superseded already) is skipped with ErrConflict.
// Nothing is rewritten or deleted.
func Repair(ctx context.Context, l *eventlog.Log, rep *Report, opts Options, dryRun bool) ([]Repaired, error) {
	opts.defaults()
	var out []Repaired
	for _, f := range rep.Findings {
		if f.fix == nil {
			continue
		}
		ev := f.fix.ev
		if opts.PurgedAsDeleted && f.fix.alt != nil {
			ev = f.fix.alt
		}
		r := Repaired{Finding: f}
		if !dryRun {
			r.Seq, r.Err = l.Append(ctx, ev, f.fix.expect)
			if r.Err != nil && !errors.Is(r.Err, eventlog.ErrConflict) {
				out = append(out, r)
				return out, fmt.Errorf("logcheck: repairing %s: %w", f.Key, r.Err)
			}
			opts.Logger.Info("logcheck: repaired", "key", f.Key.String(), "problem", string(f.Problem), "appended", r.Seq, "err", r.Err)
		}
		out = append(out, r)
	}
	return out, nil
}
