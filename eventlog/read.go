package eventlog

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// Record is one event as stored: its sequence (the resourceVersion of the revision it carries)
// and the decoded envelope. A message that cannot be decoded gives a Record with Err set and
// Event nil, so that readers can report it with its sequence and move on.
// The event's strings and object bytes share the memory of the message they were read from:
// they are read-only, like everything a Record holds.
type Record struct {
	Seq     uint64
	Subject string
	Stored  time.Time
	Event   *eventv1.ObjectChanged
	Err     error
	// Stale is set by Get and Create's reads when the key's latest message (at Seq) cannot be
	// decoded: Event is then the latest revision before it that can (nil if there is none), and
	// the key's state is taken to be that one's, at Seq. A write that expects Seq supersedes the
	// unreadable message, so it never blocks the object (`logplane log repair` appends that
	// revision again). Stale is the decoding error.
	Stale error
	// Pos is set on the records of a node's feed (FollowFeed): the log's position the feed
	// reflects with this record. Seq is then the object's revision in the log.
	Pos     uint64
	feedSeq uint64 // the record's sequence in its feed
}

// Key returns the key its subject names (also for a record that could not be decoded), and
// whether the subject is an object's subject at all.
func (r Record) Key() (Key, bool) {
	toks := strings.Split(r.Subject, ".")
	n := len(toks)
	if n < 6 || toks[n-5] != "obj" {
		return Key{}, false
	}
	var k Key
	for i, dst := range []*string{&k.Group, &k.Resource, &k.Namespace, &k.Name} {
		v, err := url.PathUnescape(toks[n-4+i])
		if err != nil || v == "" {
			return Key{}, false
		}
		*dst = v
	}
	if k.Group == "core" {
		k.Group = ""
	}
	if k.Namespace == "_" {
		k.Namespace = ""
	}
	return k, true
}

// Tombstone reports whether the record is a deletion.
func (r Record) Tombstone() bool {
	return r.Event.GetType() == eventv1.ChangeType_CHANGE_TYPE_DELETED
}

// decode reads one stored message. Besides a message that is not an ObjectChanged at all, it
// refuses one whose object is not the one its subject names: per-key compare-and-set works on
// subjects, so such an event would be outside the key's history.
func (l *Log) decode(seq uint64, subject string, stored time.Time, data []byte) Record {
	return decodeUnder(l.cfg.Prefix, seq, subject, stored, data)
}

// decodeUnder is decode for a message whose object subjects start with prefix.
func decodeUnder(prefix string, seq uint64, subject string, stored time.Time, data []byte) Record {
	rec := Record{Seq: seq, Subject: subject, Stored: stored}
	ev, err := newEvent(data)
	if err != nil {
		rec.Err = fmt.Errorf("eventlog: undecodable event at sequence %d on %s: %w", seq, subject, err)
		return rec
	}
	key := KeyOf(ev)
	switch {
	case key.valid() != nil || ev.GetType() == eventv1.ChangeType_CHANGE_TYPE_UNSPECIFIED || ev.GetType() > eventv1.ChangeType_CHANGE_TYPE_DELETED:
		rec.Err = fmt.Errorf("eventlog: malformed event at sequence %d on %s: no type, resource or name", seq, subject)
		return rec
	case !key.hasSubject(prefix, subject):
		rec.Err = fmt.Errorf("eventlog: event at sequence %d on %s is about %s, another object", seq, subject, key)
		return rec
	}
	rec.Event = ev
	return rec
}

// last returns the key's latest record, tombstone or not; ErrNotFound if it has none.
func (l *Log) last(ctx context.Context, key Key) (Record, error) {
	if err := key.valid(); err != nil {
		return Record{}, err
	}
	if l.IsNodeFeed() {
		// A node sees the revision its feed holds (what it may read); a Create that lost to
		// an existing object (its own Node, on a restart) finds it there.
		return l.feedGet(ctx, key)
	}
	subj := key.subject(l.cfg.Prefix)
	m, err := l.stream.GetLastMsgForSubject(ctx, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Record{}, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	if err != nil {
		return Record{}, fmt.Errorf("eventlog: reading %s: %w", key, err)
	}
	rec := l.decode(m.Sequence, m.Subject, m.Time, m.Data)
	if rec.Err != nil {
		return l.lastReadable(ctx, key, rec)
	}
	return rec, nil
}

// lastReadable stands in for bad, the key's latest message, which cannot be decoded: the latest
// revision before it that can be, at bad's sequence (see Record.Stale).
func (l *Log) lastReadable(ctx context.Context, key Key, bad Record) (Record, error) {
	out := Record{Seq: bad.Seq, Subject: bad.Subject, Stored: bad.Stored, Stale: bad.Err}
	l.cfg.Logger.Warn("eventlog: the latest revision of an object cannot be read; its state is taken from the one before",
		"key", key.String(), "seq", bad.Seq, "err", bad.Err)
	err := l.scan(ctx, key.subject(l.cfg.Prefix), 1, bad.Seq-1, func(r Record) error {
		if r.Err == nil {
			out.Event = r.Event
		}
		return nil
	})
	if err != nil {
		return Record{}, fmt.Errorf("eventlog: history of %s: %w", key, err)
	}
	return out, nil
}

// Get returns the latest revision of key. If the key has none, or its latest is a tombstone,
// Get returns ErrNotFound.
func (l *Log) Get(ctx context.Context, key Key) (Record, error) {
	if l.IsNodeFeed() {
		return l.feedGet(ctx, key)
	}
	rec, err := l.last(ctx, key)
	if err != nil {
		return Record{}, err
	}
	if rec.Event == nil {
		return Record{}, fmt.Errorf("%w: %s (its only revisions cannot be read: %v)", ErrNotFound, key, rec.Stale)
	}
	if rec.Tombstone() {
		return Record{}, fmt.Errorf("%w: %s (deleted at %d)", ErrNotFound, key, rec.Seq)
	}
	return rec, nil
}

// History returns every revision of key still in the log, oldest first, tombstones included.
// A key with no revision has an empty history. A revision that cannot be decoded is in the
// history with Err set.
func (l *Log) History(ctx context.Context, key Key) ([]Record, error) {
	if err := key.valid(); err != nil {
		return nil, err
	}
	var recs []Record
	if err := l.scan(ctx, key.subject(l.cfg.Prefix), 1, 0, func(r Record) error {
		recs = append(recs, r)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("eventlog: history of %s: %w", key, err)
	}
	return recs, nil
}

// At returns the revision of key that was current at sequence seq: the latest one at or before
// it. If the key did not exist then (no revision yet, or a tombstone), At returns ErrNotFound;
// if seq is older than what retention has kept, ErrGone. A revision retention has dropped is
// not found, even if it was current at seq.
func (l *Log) At(ctx context.Context, key Key, seq uint64) (Record, error) {
	if err := key.valid(); err != nil {
		return Record{}, err
	}
	if seq == 0 {
		return Record{}, fmt.Errorf("%w: %s at 0", ErrNotFound, key)
	}
	if err := l.checkKept(ctx, seq); err != nil {
		return Record{}, err
	}
	d, err := l.newDirect()
	if err != nil {
		return Record{}, err
	}
	defer d.close()
	var found Record
	if _, _, err := d.get(ctx, directRequest{MultiLastFor: []string{key.subject(l.cfg.Prefix)}, UpToSeq: seq}, func(r Record) error {
		found = r
		return nil
	}); err != nil {
		return Record{}, fmt.Errorf("eventlog: %s at %d: %w", key, seq, err)
	}
	switch {
	case found.Seq == 0 || found.Event != nil && found.Tombstone():
		return Record{}, fmt.Errorf("%w: %s at %d", ErrNotFound, key, seq)
	case found.Err != nil:
		return Record{}, found.Err
	}
	return found, nil
}
