package eventlog

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Log is the object log. It is safe for concurrent use.
type Log struct {
	cfg        Config
	srv        *embedded   // nil when the log is on an external server
	auth       *authority  // the embedded server's keys; nil on an external server
	space      *spaceWatch // nil when the log is on an external server
	nc         *nats.Conn
	conn       *connWatch
	js         jetstream.JetStream
	stream     jetstream.Stream
	maxPayload int
	// acked is the highest sequence the server acknowledged to this log (or the stream had
	// when the log opened): a message sent after it was read is stored after it.
	acked atomic.Uint64
	// settles counts the appends whose connection was lost before their answer came.
	settles atomic.Int64

	// commit, when set, runs after a message is acknowledged and returns once it is durable.
	commit    func(context.Context) error
	committer *committer
	commitSub *nats.Subscription
	barriers  atomic.Int64 // commit barriers another process answered to this one

	keysMu  sync.Mutex
	keys    *DataKeys          // the data-key store, opened on first use
	keysSub *nats.Subscription // the data-key commit barriers this process answers

	feeds feeds // the nodes' feeds (feed.go)

	snapMu    sync.Mutex
	snapStore jetstream.ObjectStore // created on first use
}

// Open connects to the configured server (starting the embedded one if no URL is given) and makes
// sure the object stream exists with the configured retention.
func Open(ctx context.Context, cfg Config) (*Log, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	l := &Log{cfg: cfg}
	if err := l.connect(); err != nil {
		return nil, err
	}
	if err := l.ensureStream(ctx); err != nil {
		l.Close()
		return nil, err
	}
	if err := l.setupCommit(); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

func (l *Log) connect() error {
	opts := []nats.Option{
		nats.Name("logplane"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		// nats.go prints these on stderr by default. A write on a connection whose server just
		// went away is one of them; what it lost, the appends find out (see connWatch).
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				l.cfg.Logger.Warn("eventlog: nats connection", "subject", sub.Subject, "err", err)
				return
			}
			l.cfg.Logger.Warn("eventlog: nats connection", "err", err)
		}),
	}
	url := l.cfg.URL
	if url == "" {
		srv, err := startServer(&l.cfg)
		if err != nil {
			return err
		}
		l.srv, l.auth = srv, srv.auth
		// The process embedding the server holds its keys: its own connection is the admin's.
		creds, err := l.auth.credentials(&l.cfg, Identity{Role: RoleAdmin, Name: "embedded"})
		if err != nil {
			l.shutdownServer()
			return err
		}
		copts, _, err := credsOptions(creds)
		if err != nil {
			l.shutdownServer()
			return err
		}
		opts = append(opts, nats.InProcessServer(srv))
		opts = append(opts, copts...)
		l.startSpaceWatch()
	} else {
		creds := l.cfg.Creds
		if l.cfg.CredsFile != "" {
			b, err := os.ReadFile(l.cfg.CredsFile)
			if err != nil {
				return fmt.Errorf("eventlog: credentials: %w", err)
			}
			creds = b
		}
		if creds != nil {
			copts, holder, err := credsOptions(creds)
			if err != nil {
				return err
			}
			opts = append(opts, copts...)
			if node, ok := strings.CutPrefix(holder, "system:node:"); ok && l.cfg.Node == "" {
				l.cfg.Node = node // a node's credential appends only through its commands
			}
			if holder == (Identity{Role: RoleSimulatedNodes}).userName() {
				l.cfg.Node = anyNode
			}
		}
		if l.cfg.CAFile != "" {
			pem, err := os.ReadFile(l.cfg.CAFile)
			if err != nil {
				return fmt.Errorf("eventlog: CA: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("eventlog: CA %s holds no PEM certificate", l.cfg.CAFile)
			}
			// Used if the server requires TLS (it does beyond loopback); a loopback server
			// without TLS is still reached as it is.
			opts = append(opts, func(o *nats.Options) error {
				o.TLSConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
				return nil
			})
		}
	}
	nc, err := nats.Connect(url, opts...)
	if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) {
		l.shutdownServer()
		return fmt.Errorf("%w: connect %q: %v", ErrUnauthorized, url, err)
	}
	if err != nil {
		l.shutdownServer()
		return fmt.Errorf("%w: connect %q: %v", ErrUnreachable, url, err)
	}
	l.nc = nc
	l.conn = watchConn(nc)
	l.maxPayload = int(nc.MaxPayload())
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("eventlog: jetstream: %w", err)
	}
	l.js = js
	return nil
}

func (l *Log) streamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              l.cfg.Stream,
		Description:       "logplane object log: one ObjectChanged event per revision of every object",
		Subjects:          []string{l.cfg.Prefix + ".obj.>"},
		Storage:           jetstream.FileStorage,
		Replicas:          l.cfg.Replicas,
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxMsgsPerSubject: -1,
		MaxAge:            l.cfg.MaxAge,
		MaxBytes:          orUnlimited(l.cfg.MaxBytes),
		MaxMsgs:           -1,
		MaxMsgSize:        -1,
		Compression:       l.compression(),
		AllowDirect:       true,
		DenyDelete:        true,
		// logplane does not deduplicate by message ID (compare-and-set makes appends safe to
		// retry), and at every start the server re-reads every message of the last window to
		// rebuild its table of IDs: with the default two minutes, that was seconds of startup
		// after a busy minute. 100 ms is the least the server accepts.
		Duplicates: 100 * time.Millisecond,
	}
}

func orUnlimited(n int64) int64 {
	if n == 0 {
		return -1
	}
	return n
}

func (l *Log) ensureStream(ctx context.Context) error {
	if l.IsNodeFeed() {
		// A node reads only its feed (FollowFeed) and appends by commands: the stream is not
		// its to see.
		return nil
	}
	if l.srv == nil {
		// Another process's server: use the stream as it is, and make it only if it is not
		// there yet. Changing it (retention) is an admin's right; a credential that may not
		// make it waits for the process that may.
		s, err := l.js.Stream(ctx, l.cfg.Stream)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			createCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if s, err = l.js.CreateStream(createCtx, l.streamConfig()); err != nil {
				return fmt.Errorf("%w: the stream %s does not exist yet, and making it failed: %v", ErrUnreachable, l.cfg.Stream, err)
			}
		}
		if err != nil {
			return fmt.Errorf("eventlog: stream %s: %w", l.cfg.Stream, err)
		}
		l.stream = s
		return nil
	}
	s, err := l.js.CreateOrUpdateStream(ctx, l.streamConfig())
	if err != nil {
		return fmt.Errorf("eventlog: stream %s: %w", l.cfg.Stream, err)
	}
	l.stream = s
	l.noteAcked(s.CachedInfo().State.LastSeq)
	return nil
}

func (l *Log) setupCommit() error {
	if l.cfg.Durability != GroupCommit {
		return nil
	}
	if l.srv == nil {
		// Another process embeds the server and does the fsyncs; ask it for the barrier.
		subj := l.cfg.commitSubject()
		l.commit = func(ctx context.Context) error { return l.remoteCommit(ctx, subj) }
		return nil
	}
	l.committer = newCommitter(streamMsgsDir(&l.cfg, l.cfg.Stream))
	l.commit = l.committer.Sync
	sub, err := l.nc.Subscribe(l.cfg.commitSubject(), func(m *nats.Msg) {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var reply []byte
			if err := l.committer.Sync(ctx); err != nil {
				reply = []byte(err.Error())
			}
			if err := m.Respond(reply); err != nil {
				l.cfg.Logger.Warn("eventlog: answering a commit barrier", "err", err)
			}
		}()
	})
	if err != nil {
		return fmt.Errorf("eventlog: serving commit barriers: %w", err)
	}
	l.commitSub = sub
	return nil
}

// remoteCommit asks the process that embeds the server for a commit barrier on subj. The barrier
// is idempotent: a request whose connection was lost is made again once it is back, and so is
// one that found no responder after a barrier was answered before (the embedding process's
// subscription comes back with its own reconnection, maybe after this one's).
func (l *Log) remoteCommit(ctx context.Context, subj string) error {
	if _, hasDeadline := ctx.Deadline(); !hasDeadline {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	for round := 1; ; round++ {
		rctx, release := l.conn.whileConnected(ctx)
		reply, err := l.nc.RequestWithContext(rctx, subj, nil)
		lost := wasLost(ctx, rctx)
		release()
		again := round < maxSettle
		switch {
		case lost && again:
			if err := l.conn.waitUp(ctx); err != nil {
				return fmt.Errorf("eventlog: commit barrier: %w", err)
			}
			continue
		case errors.Is(err, nats.ErrNoResponders) && l.barriers.Load() > 0 && again:
			t := time.NewTimer(250 * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("eventlog: commit barrier: no responder since the connection came back: %w", ctx.Err())
			case <-t.C:
			}
			continue
		case errors.Is(err, nats.ErrNoResponders):
			return fmt.Errorf("eventlog: no logplane process answers commit barriers on %s "+
				"(an external NATS cluster needs durability server-sync): %w", subj, err)
		case err != nil:
			return fmt.Errorf("eventlog: commit barrier: %w", err)
		case len(reply.Data) > 0:
			return fmt.Errorf("eventlog: commit barrier: %s", reply.Data)
		}
		l.barriers.Add(1)
		return nil
	}
}

// ClientURL is the URL other processes use to reach the embedded server, or "" if it does not
// listen (or the log is on an external server: use that server's URL).
func (l *Log) ClientURL() string {
	if l.srv == nil || l.cfg.Listen == "" {
		return ""
	}
	return l.srv.clientURL()
}

// Close stops the log and, if it embeds the server, the server. Appends in flight fail.
func (l *Log) Close() error {
	if l.commitSub != nil {
		_ = l.commitSub.Unsubscribe() // the connection is closed next anyway
	}
	if l.keysSub != nil {
		_ = l.keysSub.Unsubscribe() // likewise
	}
	if l.nc != nil {
		l.nc.Close()
		l.conn.stop(l.nc)
	}
	if l.committer != nil {
		l.committer.close()
	}
	l.shutdownServer()
	return nil
}

func (l *Log) shutdownServer() {
	l.stopSpaceWatch()
	l.space = nil
	if l.srv != nil {
		l.srv.close()
		l.srv = nil
	}
}

// Bounds returns the first and last sequence in the stream. In an empty stream last is 0 and
// first is 1 (or the sequence after the last event retention dropped).
//
// A node's log (IsNodeFeed) answers from its feed: last is the log's position the feed reflects.
func (l *Log) Bounds(ctx context.Context) (first, last uint64, err error) {
	if l.IsNodeFeed() {
		return l.feedBounds(ctx)
	}
	info, err := l.stream.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("eventlog: stream info: %w", err)
	}
	return info.State.FirstSeq, info.State.LastSeq, nil
}

// Prefix is the subject prefix of this log, for components that keep their own subjects beside it.
func (l *Log) Prefix() string { return l.cfg.Prefix }

// Consumers returns how many consumers the object stream has now: one per running Follow.
func (l *Log) Consumers(ctx context.Context) (int, error) {
	if l.stream == nil {
		return 0, fmt.Errorf("%w: a node reads only its feed", ErrForbidden)
	}
	info, err := l.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("eventlog: stream info: %w", err)
	}
	return info.State.Consumers, nil
}

func (l *Log) compression() jetstream.StoreCompression {
	if l.cfg.NoCompression {
		return jetstream.NoCompression
	}
	return jetstream.S2Compression
}
