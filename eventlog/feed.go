package eventlog

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// A node's feed: the objects one node may read, kept by the control plane (reconcilers/nodefeed)
// in a stream of the node's own, <Stream>_FEED_<node>, on the subjects
// <prefix>.feed.<node>.obj.<group>.<resource>.<ns>.<name> (the object subjects of the log under
// the node's prefix) and <prefix>.feed.<node>.mark. Each message of an object is the event of
// its current revision as the log holds it (a Secret stays sealed), with the revision in a
// header; an object that left the node's set has a removal message instead. The stream keeps one
// message per subject: it is the current state, the log keeps the history. Every message carries
// the log's position the feed reflects with it, so that a node that wrote at sequence S can wait
// for its feed to have passed S (the mark says it when nothing of the node's changed).
//
// A stream per node, rather than one stream with a subject per node, because that is what NATS
// permissions can confine: a consumer's pull requests name the stream and the consumer, never the
// subjects it filters, so a node allowed to pull from one shared stream could pull from a
// consumer another node made. With a stream of its own, every JetStream API subject a node's
// credential may use names its own stream.

const (
	hdrRev     = "Logplane-Rev"
	hdrPos     = "Logplane-Pos"
	hdrRemoved = "Logplane-Removed"
)

// FeedEntry is one object's state in a node's feed: the event of its current revision Rev as the
// log holds it (Data, the message of the log), or its removal from the node's set (Data nil).
type FeedEntry struct {
	Key  Key
	Rev  uint64
	Data []byte
}

// FeedStream is the name of node's feed stream.
func (c *Config) feedStream(node string) string {
	// Node names are DNS subdomains: '.' is the one character a stream name may not hold, and
	// '_' is not in a DNS name, so the mapping keeps names apart.
	r := strings.NewReplacer(".", "_", "*", "_", ">", "_", " ", "_", "/", "_", "\\", "_")
	return c.Stream + "_FEED_" + r.Replace(node)
}

func (c *Config) feedPrefix(node string) string { return c.Prefix + ".feed." + escapeToken(node) }

func (c *Config) feedMark(node string) string { return c.feedPrefix(node) + ".mark" }

// feedNode is the node whose feed this log reads (a node's credential), or "".
func (l *Log) feedNode() string {
	if l.cfg.Node == anyNode {
		return ""
	}
	return l.cfg.Node
}

// IsNodeFeed reports whether this log is a node's: it reads only the node's feed (FollowFeed),
// and Get and Bounds answer from it.
func (l *Log) IsNodeFeed() bool { return l.feedNode() != "" }

// feeds holds the feed streams this (control-plane) log has made sure of.
type feeds struct {
	mu      sync.Mutex
	streams map[string]jetstream.Stream
	own     jetstream.Stream // a node's own feed
}

func (l *Log) feedStreamFor(ctx context.Context, node string) (jetstream.Stream, error) {
	l.feeds.mu.Lock()
	defer l.feeds.mu.Unlock()
	if s, ok := l.feeds.streams[node]; ok {
		return s, nil
	}
	cfg := jetstream.StreamConfig{
		Name:              l.cfg.feedStream(node),
		Description:       "logplane: what node " + node + " may read, derived from the log",
		Subjects:          []string{l.cfg.feedPrefix(node) + ".>"},
		Storage:           jetstream.FileStorage,
		Replicas:          l.cfg.Replicas,
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxMsgsPerSubject: 1,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxMsgSize:        -1,
		AllowDirect:       true,
		Duplicates:        100 * time.Millisecond,
	}
	s, err := l.js.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = l.js.CreateStream(ctx, cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("eventlog: feed of node %s: %w", node, err)
	}
	if l.feeds.streams == nil {
		l.feeds.streams = map[string]jetstream.Stream{}
	}
	l.feeds.streams[node] = s
	return s, nil
}

// PublishFeed puts entries into node's feed, in order, then marks the feed as reflecting the
// log up to pos, and returns once the server has them all. Entries of one key must come in the
// order of their revisions.
func (l *Log) PublishFeed(ctx context.Context, node string, pos uint64, entries []FeedEntry) error {
	if _, err := l.feedStreamFor(ctx, node); err != nil {
		return err
	}
	prefix := l.cfg.feedPrefix(node)
	p := strconv.FormatUint(pos, 10)
	futures := make([]jetstream.PubAckFuture, 0, len(entries)+1)
	for _, e := range entries {
		msg := &nats.Msg{Subject: e.Key.subject(prefix), Data: e.Data, Header: nats.Header{}}
		// Only the mark that ends the batch carries the position: a reader that took it from
		// the batch's first entry would count the rest as read before it had them.
		msg.Header.Set(hdrRev, strconv.FormatUint(e.Rev, 10))
		if e.Data == nil {
			msg.Header.Set(hdrRemoved, "1")
		}
		f, err := l.js.PublishMsgAsync(msg)
		if err != nil {
			return fmt.Errorf("eventlog: feed of node %s: %w", node, err)
		}
		futures = append(futures, f)
	}
	mark := &nats.Msg{Subject: l.cfg.feedMark(node), Header: nats.Header{}}
	mark.Header.Set(hdrPos, p)
	f, err := l.js.PublishMsgAsync(mark)
	if err != nil {
		return fmt.Errorf("eventlog: feed of node %s: %w", node, err)
	}
	futures = append(futures, f)
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("eventlog: feed of node %s: %w", node, err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// ReadFeed returns what node's feed holds now: each object in it with its revision (removed
// ones left out), and the position it reflects. A feed never made is empty.
func (l *Log) ReadFeed(ctx context.Context, node string) (map[Key]uint64, uint64, error) {
	s, err := l.feedStreamFor(ctx, node)
	if err != nil {
		return nil, 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("eventlog: feed of node %s: %w", node, err)
	}
	held := map[Key]uint64{}
	var pos uint64
	if info.State.Msgs == 0 {
		return held, 0, nil
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	err = l.followFeed(rctx, s, node, func(r Record) error {
		if r.Pos > pos {
			pos = r.Pos
		}
		if k, ok := r.Key(); ok {
			if r.Tombstone() {
				delete(held, k)
			} else {
				held[k] = r.Seq
			}
		}
		if r.feedSeq >= info.State.LastSeq {
			return errStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, 0, err
	}
	return held, pos, nil
}

// FollowFeed calls fn with every message of this node's feed, from the first, and then as they
// come, until ctx ends or fn fails. A record's Seq is the object's revision in the log and Pos
// the log's position the feed reflects with it; a removal comes as a deletion, and a mark as a
// record with only Pos. It waits for the feed to exist: the control plane makes it when it sees
// the node.
func (l *Log) FollowFeed(ctx context.Context, fn func(Record) error) error {
	node := l.feedNode()
	if node == "" {
		return fmt.Errorf("%w: FollowFeed needs a node's log", ErrInvalid)
	}
	var s jetstream.Stream
	for {
		var err error
		s, err = l.js.Stream(ctx, l.cfg.feedStream(node))
		if err == nil {
			break
		}
		if !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("eventlog: feed of node %s: %w", node, err)
		}
		if err := l.requestFeed(ctx); err != nil {
			return err
		}
	}
	return l.followFeed(ctx, s, node, fn)
}

func (l *Log) followFeed(ctx context.Context, s jetstream.Stream, node string, fn func(Record) error) error {
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return fmt.Errorf("eventlog: feed of node %s: %w", node, err)
	}
	msgs := make(chan jetstream.Msg, 256)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case msgs <- m:
		case <-ctx.Done():
		}
	}, jetstream.PullMaxMessages(256))
	if err != nil {
		return fmt.Errorf("eventlog: feed of node %s: %w", node, err)
	}
	defer cc.Stop()
	prefix := l.cfg.feedPrefix(node)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-cc.Closed():
			return fmt.Errorf("%w: feed of node %s: the consumer ended", ErrClosed, node)
		case m := <-msgs:
			meta, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("eventlog: feed of node %s: %w", node, err)
			}
			if err := fn(l.decodeFeed(prefix, meta.Sequence.Stream, m.Subject(), meta.Timestamp, m.Headers(), m.Data())); err != nil {
				return err
			}
		}
	}
}

// decodeFeed reads one message of a feed under prefix.
func (l *Log) decodeFeed(prefix string, feedSeq uint64, subject string, stored time.Time, h nats.Header, data []byte) Record {
	pos, _ := strconv.ParseUint(h.Get(hdrPos), 10, 64)
	if !strings.HasPrefix(subject, prefix+".obj.") {
		return Record{Subject: subject, Stored: stored, Pos: pos, feedSeq: feedSeq}
	}
	rev, err := strconv.ParseUint(h.Get(hdrRev), 10, 64)
	if err != nil || rev == 0 {
		return Record{Subject: subject, Stored: stored, Pos: pos, feedSeq: feedSeq,
			Err: fmt.Errorf("eventlog: feed message %d on %s has no revision", feedSeq, subject)}
	}
	if h.Get(hdrRemoved) != "" {
		rec := Record{Seq: rev, Subject: subject, Stored: stored, Pos: pos, feedSeq: feedSeq}
		k, ok := rec.Key()
		if !ok {
			rec.Err = fmt.Errorf("eventlog: feed message %d on %s names no object", feedSeq, subject)
			return rec
		}
		rec.Event = &eventv1.ObjectChanged{Type: eventv1.ChangeType_CHANGE_TYPE_DELETED, Reason: "unfed",
			Ref: &eventv1.ObjectRef{Group: k.Group, Resource: k.Resource, Namespace: k.Namespace, Name: k.Name}}
		return rec
	}
	rec := decodeUnder(prefix, rev, subject, stored, data)
	rec.Pos, rec.feedSeq = pos, feedSeq
	return rec
}

// ownFeed is this node's feed stream, once it exists.
func (l *Log) ownFeed(ctx context.Context) (jetstream.Stream, error) {
	l.feeds.mu.Lock()
	defer l.feeds.mu.Unlock()
	if l.feeds.own != nil {
		return l.feeds.own, nil
	}
	s, err := l.js.Stream(ctx, l.cfg.feedStream(l.feedNode()))
	if err != nil {
		return nil, err
	}
	l.feeds.own = s
	return s, nil
}

// feedGet is Get for a node's log: the object's state in its feed.
func (l *Log) feedGet(ctx context.Context, key Key) (Record, error) {
	node := l.feedNode()
	s, err := l.ownFeed(ctx)
	var m *jetstream.RawStreamMsg
	if err == nil {
		m, err = s.GetLastMsgForSubject(ctx, key.subject(l.cfg.feedPrefix(node)))
	}
	if errors.Is(err, jetstream.ErrMsgNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return Record{}, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	if err != nil {
		return Record{}, fmt.Errorf("eventlog: reading %s: %w", key, err)
	}
	rec := l.decodeFeed(l.cfg.feedPrefix(node), m.Sequence, m.Subject, m.Time, m.Header, m.Data)
	if rec.Err != nil {
		return Record{}, rec.Err
	}
	if rec.Tombstone() {
		return Record{}, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	return rec, nil
}

// feedBounds is Bounds for a node's log: the position its feed reflects.
func (l *Log) feedBounds(ctx context.Context) (first, last uint64, err error) {
	node := l.feedNode()
	var m *jetstream.RawStreamMsg
	for asked := false; ; asked = true {
		s, err := l.ownFeed(ctx)
		if err == nil {
			m, err = s.GetLastMsgForSubject(ctx, l.cfg.feedMark(node))
		}
		if err == nil {
			break
		}
		if !errors.Is(err, jetstream.ErrMsgNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return 0, 0, fmt.Errorf("eventlog: feed of node %s: %w", node, err)
		}
		if asked {
			return 1, 0, nil
		}
		// A node new to the control plane: have its feed made first.
		if err := l.requestFeed(ctx); err != nil {
			return 0, 0, err
		}
	}
	pos, _ := strconv.ParseUint(m.Header.Get(hdrPos), 10, 64)
	return 1, pos, nil
}

// A node asks for its feed on <prefix>.node.<name>.feed: the control plane makes it (if the
// node is new to it: its Node may not exist yet) and answers once the feed holds what the node
// may read, so that a starting agent sees the cluster before it registers.

func (c *Config) feedRequestSubject(node string) string {
	return c.Prefix + ".node." + escapeToken(node) + ".feed"
}

// ServeFeedRequests answers the nodes asking for their feed until ctx ends: fn makes node's feed
// current and returns the log's position it reflects, or false to leave the request to another
// replica (the node asks again).
func (l *Log) ServeFeedRequests(ctx context.Context, fn func(ctx context.Context, node string) (uint64, bool)) error {
	return l.serveNodeRequests(ctx, "feed", "logplane-node-feeds", func(m *nats.Msg) {
		toks := strings.Split(m.Subject, ".")
		if len(toks) < 3 {
			return
		}
		node, err := url.PathUnescape(toks[len(toks)-2])
		if err != nil {
			return
		}
		pos, ok := fn(ctx, node)
		if !ok {
			return
		}
		if err := m.Respond([]byte(strconv.FormatUint(pos, 10))); err != nil {
			l.cfg.Logger.Warn("eventlog: answering a node's feed request", "node", node, "err", err)
		}
	})
}

// requestFeed asks the control plane for this node's feed and waits for the answer (asking
// again every few seconds: the replica feeding the nodes may be changing) until ctx ends.
func (l *Log) requestFeed(ctx context.Context) error {
	subj := l.cfg.feedRequestSubject(l.feedNode())
	for {
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := l.nc.RequestWithContext(rctx, subj, nil)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("eventlog: asking for the feed of node %s: %w", l.feedNode(), ctx.Err())
		}
		if errors.Is(err, nats.ErrNoResponders) {
			t := time.NewTimer(time.Second)
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
		}
	}
}
