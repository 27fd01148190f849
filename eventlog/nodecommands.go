package eventlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// ErrForbidden: the writer may not make this change (a node writing outside its own objects).
var ErrForbidden = errors.New("eventlog: forbidden")

// A node's writes are commands: a node's credential may not publish to the stream, only to its
// own subject <prefix>.node.<name>.append, which no other credential of a node may publish to.
// The control plane (ServeNodeCommands) validates each command, stamps the node as its actor,
// whatever the command claims, and appends it; the reply carries the sequence or the error.

// anyNode as Config.Node: the credential is simulated nodes' (RoleSimulatedNodes).
const anyNode = "*"

const (
	hdrExpect    = "Logplane-Expect"
	hdrSeq       = "Logplane-Seq"
	hdrErrorCode = "Logplane-Error"
)

// Error codes in replies, mapped to and from the log's errors.
var commandErrors = []struct {
	code string
	err  error
}{
	{"forbidden", ErrForbidden}, {"conflict", ErrConflict}, {"exists", ErrExists}, {"notfound", ErrNotFound},
	{"toolarge", ErrTooLarge}, {"invalid", ErrInvalid}, {"nospace", ErrNoSpace},
}

func (c *Config) nodeCommandSubject(node string) string {
	return c.Prefix + ".node." + escapeToken(node) + ".append"
}

// appendCommand sends an append as the node's command and waits for the control plane's answer.
func (l *Log) appendCommand(ctx context.Context, ev *eventv1.ObjectChanged, key Key, data []byte, expect uint64) (uint64, error) {
	node := l.cfg.Node
	if node == anyNode {
		// Simulated nodes: one credential for every node of the process, each write on the
		// subject of the node it names (checked for that node like any node's).
		node = ev.GetActor().GetName()
		if ev.GetActor().GetKind() != eventv1.ActorKind_ACTOR_KIND_NODE || node == "" {
			return 0, fmt.Errorf("%w: simulated nodes write only as a node, not as %v", ErrForbidden, ev.GetActor())
		}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	msg := &nats.Msg{Subject: l.cfg.nodeCommandSubject(node), Data: data, Header: nats.Header{}}
	msg.Header.Set(hdrExpect, strconv.FormatUint(expect, 10))
	reply, err := l.nc.RequestMsgWithContext(ctx, msg)
	if errors.Is(err, nats.ErrNoResponders) {
		return 0, fmt.Errorf("%w: appending %s: no control plane answers the node's commands", ErrUnreachable, key)
	}
	if err != nil {
		return 0, l.publishError(key, expect, err)
	}
	if code := reply.Header.Get(hdrErrorCode); code != "" {
		for _, ce := range commandErrors {
			if ce.code == code {
				return 0, fmt.Errorf("%w: %s", ce.err, reply.Data)
			}
		}
		return 0, fmt.Errorf("eventlog: appending %s: %s", key, reply.Data)
	}
	seq, err := strconv.ParseUint(reply.Header.Get(hdrSeq), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("eventlog: appending %s: a reply without a sequence: %w", key, err)
	}
	return seq, nil
}

// NodeWriteCheck decides whether node may append ev to its key, expecting the key's latest
// revision to be expect; an error wrapping ErrForbidden refuses it.
type NodeWriteCheck func(ctx context.Context, node string, ev *eventv1.ObjectChanged, expect uint64) error

// ServeNodeCommands answers the nodes' append commands until ctx ends: each is checked with
// check, stamped with the node as its actor and appended. Several processes may serve them
// (a queue group shares the commands).
func (l *Log) ServeNodeCommands(ctx context.Context, check NodeWriteCheck) error {
	return l.serveNodeRequests(ctx, "append", "logplane-node-commands", func(m *nats.Msg) { l.nodeCommand(ctx, check, m) })
}

// serveNodeRequests answers the nodes' requests on <prefix>.node.*.<verb>, each in a goroutine
// of its own, until ctx ends. Several processes may serve them (the queue group shares them).
func (l *Log) serveNodeRequests(ctx context.Context, verb, group string, handle func(*nats.Msg)) error {
	sub, err := l.nc.QueueSubscribe(l.cfg.Prefix+".node.*."+verb, group, func(m *nats.Msg) { go handle(m) })
	if err != nil {
		return fmt.Errorf("eventlog: serving the nodes' %s requests: %w", verb, err)
	}
	<-ctx.Done()
	_ = sub.Unsubscribe() // fails only on a closed connection, which ends it too
	return nil
}

// failedReply is the answer to a node's request that failed: the error, with its code.
func failedReply(err error) *nats.Msg {
	code := "error"
	for _, ce := range commandErrors {
		if errors.Is(err, ce.err) {
			code = ce.code
			break
		}
	}
	reply := &nats.Msg{Header: nats.Header{}, Data: []byte(err.Error())}
	reply.Header.Set(hdrErrorCode, code)
	return reply
}

func (l *Log) nodeCommand(ctx context.Context, check NodeWriteCheck, m *nats.Msg) {
	seq, err := l.doNodeCommand(ctx, check, m)
	reply := &nats.Msg{Header: nats.Header{}}
	if err != nil {
		reply = failedReply(err)
	} else {
		reply.Header.Set(hdrSeq, strconv.FormatUint(seq, 10))
	}
	if err := m.RespondMsg(reply); err != nil {
		l.cfg.Logger.Warn("eventlog: answering a node's command", "subject", m.Subject, "err", err)
	}
}

func (l *Log) doNodeCommand(ctx context.Context, check NodeWriteCheck, m *nats.Msg) (uint64, error) {
	// The node is the subject's, which only its own credential may publish to.
	toks := strings.Split(m.Subject, ".")
	if len(toks) < 3 {
		return 0, fmt.Errorf("%w: command subject %q", ErrInvalid, m.Subject)
	}
	node, err := url.PathUnescape(toks[len(toks)-2])
	if err != nil {
		return 0, fmt.Errorf("%w: command subject %q", ErrInvalid, m.Subject)
	}
	expect, err := strconv.ParseUint(m.Header.Get(hdrExpect), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: a command without its expected revision", ErrInvalid)
	}
	ev, err := UnmarshalEvent(m.Data)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := check(ctx, node, ev, expect); err != nil {
		return 0, err
	}
	ev.Actor = &eventv1.Actor{Kind: eventv1.ActorKind_ACTOR_KIND_NODE, Name: node}
	if expect == AnyRevision {
		return 0, fmt.Errorf("%w: a node appends only at a revision it read", ErrForbidden)
	}
	return l.Append(ctx, ev, expect)
}

// A node does not hold the key-encryption key: the Secrets of its feed come sealed, and it asks
// the control plane to open each on its own subject <prefix>.node.<name>.open. The control plane
// (ServeNodeOpens) opens only the objects the node may read, and answers on the node's own
// inbox, which no other credential may read.

func (c *Config) nodeOpenSubject(node string) string {
	return c.Prefix + ".node." + escapeToken(node) + ".open"
}

// NodeOpener opens the sealed objects of a node's feed by asking the control plane.
type NodeOpener struct{ l *Log }

// NodeOpener returns the opener of this node's log (IsNodeFeed).
func (l *Log) NodeOpener() NodeOpener { return NodeOpener{l: l} }

// Open sends ev, sealed, to the control plane and returns it opened; ev itself if it is not
// sealed. A refusal wraps ErrForbidden.
func (o NodeOpener) Open(ctx context.Context, ev *eventv1.ObjectChanged) (*eventv1.ObjectChanged, error) {
	if ev.GetEncoding() != eventv1.Encoding_ENCODING_SEALED {
		return ev, nil
	}
	l := o.l
	node := l.feedNode()
	if node == "" {
		return nil, fmt.Errorf("%w: only a node's log opens through the control plane", ErrInvalid)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	key := KeyOf(ev)
	msg := &nats.Msg{Subject: l.cfg.nodeOpenSubject(node), Data: AppendEvent(nil, ev), Header: nats.Header{}}
	reply, err := l.nc.RequestMsgWithContext(ctx, msg)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, fmt.Errorf("%w: opening %s: no control plane answers the node's commands", ErrUnreachable, key)
	}
	if err != nil {
		return nil, fmt.Errorf("eventlog: opening %s: %w", key, err)
	}
	if code := reply.Header.Get(hdrErrorCode); code != "" {
		for _, ce := range commandErrors {
			if ce.code == code {
				return nil, fmt.Errorf("%w: %s", ce.err, reply.Data)
			}
		}
		return nil, fmt.Errorf("eventlog: opening %s: %s", key, reply.Data)
	}
	opened, err := UnmarshalEvent(reply.Data)
	if err != nil {
		return nil, fmt.Errorf("eventlog: opening %s: %w", key, err)
	}
	if KeyOf(opened) != key {
		return nil, fmt.Errorf("eventlog: opening %s: the answer is about %s", key, KeyOf(opened))
	}
	return opened, nil
}

// NodeReadCheck decides whether node may read the object at key; an error wrapping
// ErrForbidden refuses it.
type NodeReadCheck func(ctx context.Context, node string, key Key) error

// ServeNodeOpens answers the nodes' requests to open sealed objects until ctx ends: each is
// checked with check for the node of its subject and opened with open. Several processes may
// serve them (a queue group).
func (l *Log) ServeNodeOpens(ctx context.Context, check NodeReadCheck,
	open func(context.Context, *eventv1.ObjectChanged) (*eventv1.ObjectChanged, error)) error {
	return l.serveNodeRequests(ctx, "open", "logplane-node-opens", func(m *nats.Msg) {
		data, err := l.doNodeOpen(ctx, check, open, m)
		reply := &nats.Msg{Header: nats.Header{}, Data: data}
		if err != nil {
			reply = failedReply(err)
		}
		if err := m.RespondMsg(reply); err != nil {
			l.cfg.Logger.Warn("eventlog: answering a node's open", "subject", m.Subject, "err", err)
		}
	})
}

func (l *Log) doNodeOpen(ctx context.Context, check NodeReadCheck,
	open func(context.Context, *eventv1.ObjectChanged) (*eventv1.ObjectChanged, error), m *nats.Msg) ([]byte, error) {
	toks := strings.Split(m.Subject, ".")
	if len(toks) < 3 {
		return nil, fmt.Errorf("%w: command subject %q", ErrInvalid, m.Subject)
	}
	node, err := url.PathUnescape(toks[len(toks)-2])
	if err != nil {
		return nil, fmt.Errorf("%w: command subject %q", ErrInvalid, m.Subject)
	}
	ev, err := UnmarshalEvent(m.Data)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	key := KeyOf(ev)
	if err := key.valid(); err != nil {
		return nil, err
	}
	// The object's reference is bound to its ciphertext (the sealing's additional data): a
	// node cannot have another object opened under the name of one it may read.
	if err := check(ctx, node, key); err != nil {
		return nil, err
	}
	opened, err := open(ctx, ev)
	if err != nil {
		return nil, fmt.Errorf("eventlog: opening %s for node %s: %w", key, node, err)
	}
	return AppendEvent(nil, opened), nil
}

// A node's questions about what it may not read itself: on its own subject
// <prefix>.node.<name>.query, answered by the control plane from its projection. The one question
// is PodAddressesQuery.

func (c *Config) nodeQuerySubject(node string) string {
	return c.Prefix + ".node." + escapeToken(node) + ".query"
}

// PodAddressesQuery asks which pods bound to Node have an address in Range (a CIDR): a starting
// agent's pod-range check, before it takes over the range of a NotReady node whose pods it
// cannot read. The answer is a JSON list of "namespace/name address".
type PodAddressesQuery struct {
	Node  string `json:"node"`
	Range string `json:"range"`
}

// PodAddresses asks the control plane q, as this node.
func (l *Log) PodAddresses(ctx context.Context, q PodAddressesQuery) ([]string, error) {
	node := l.feedNode()
	if node == "" {
		return nil, fmt.Errorf("%w: only a node's log asks the control plane", ErrInvalid)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	data, err := json.Marshal(q)
	if err != nil {
		return nil, fmt.Errorf("eventlog: %w", err)
	}
	reply, err := l.nc.RequestWithContext(ctx, l.cfg.nodeQuerySubject(node), data)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, fmt.Errorf("%w: no control plane answers the node's queries", ErrUnreachable)
	}
	if err != nil {
		return nil, fmt.Errorf("eventlog: node query: %w", err)
	}
	if code := reply.Header.Get(hdrErrorCode); code != "" {
		return nil, fmt.Errorf("eventlog: node query: %s", reply.Data)
	}
	var out []string
	if err := json.Unmarshal(reply.Data, &out); err != nil {
		return nil, fmt.Errorf("eventlog: node query: %w", err)
	}
	return out, nil
}

// ServeNodeQueries answers the nodes' PodAddressesQuery with fn until ctx ends (a queue group).
func (l *Log) ServeNodeQueries(ctx context.Context, fn func(ctx context.Context, node string, q PodAddressesQuery) ([]string, error)) error {
	return l.serveNodeRequests(ctx, "query", "logplane-node-queries", func(m *nats.Msg) {
		reply := &nats.Msg{Header: nats.Header{}}
		var q PodAddressesQuery
		toks := strings.Split(m.Subject, ".")
		node, err := url.PathUnescape(toks[len(toks)-2])
		if err == nil {
			err = json.Unmarshal(m.Data, &q)
		}
		var out []string
		if err == nil {
			out, err = fn(ctx, node, q)
		}
		if err == nil {
			reply.Data, err = json.Marshal(out)
		}
		if err != nil {
			reply.Header.Set(hdrErrorCode, "error")
			reply.Data = []byte(err.Error())
		}
		if err := m.RespondMsg(reply); err != nil {
			l.cfg.Logger.Warn("eventlog: answering a node's query", "subject", m.Subject, "err", err)
		}
	})
}
