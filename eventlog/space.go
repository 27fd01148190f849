package eventlog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sys/unix"
)

// ErrNoSpace: the log's disk is full (or the server's storage limit is reached). Nothing was
// written; reads and watches go on; writes succeed again once there is room. HTTP 507.
var ErrNoSpace = errors.New("eventlog: the log is out of disk space")

// Space says whether the log's disk is full, as the process embedding the server sees it.
type Space struct {
	// Full: a write failed for want of space and appends are refused (ErrNoSpace, at once,
	// without trying the server) until the disk has Config.MinFreeBytes free again.
	Full bool
	// Since is when it ran out (Full), or when it last had room again.
	Since time.Time
	// Cause is the server's error that said so.
	Cause string
	// Free is the space left on the log's filesystem when last looked at, in bytes.
	Free int64
	// Restarts counts the restarts of the embedded server that brought writes back.
	Restarts int
}

// SpaceEvent is what Config.OnSpace is told: the log ran out of space (Full) or has room again.
type SpaceEvent struct {
	Full  bool
	Since time.Time // when it ran out
	// Until is when it had room again (not Full); Refused counts the appends refused meanwhile.
	Until   time.Time
	Refused uint64
	Cause   string
}

// nats-server's error codes for a store over its limits (jetstream_errors_generated.go).
const (
	jsErrInsufficientResources    jetstream.ErrorCode = 10023
	jsErrStorageResourcesExceeded jetstream.ErrorCode = 10047
)

// isNoSpace reports whether err says the disk (or the server's store) is full. nats-server turns
// the file store's errors into text, so the text is what there is to look at.
func isNoSpace(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jsErrInsufficientResources || apiErr.ErrorCode == jsErrStorageResourcesExceeded) {
		return true
	}
	return isNoSpaceText(err.Error())
}

func isNoSpaceText(s string) bool {
	return strings.Contains(s, "no space left on device") || strings.Contains(s, "disk quota exceeded")
}

// spaceWatch is the state of the disk of an embedded server.
type spaceWatch struct {
	mu  sync.Mutex
	cur Space
	// room is cancelled when the disk is found full: appends waiting for the server's answer,
	// which never comes for a write that failed, fail then rather than at their deadline.
	room     context.Context
	noRoom   context.CancelFunc
	refused  uint64
	kick     chan struct{}
	stop     chan struct{}
	done     chan struct{}
	interval time.Duration
}

func (w *spaceWatch) full() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cur.Full {
		w.refused++
	}
	return w.cur.Full
}

// Space tells whether the log's disk is full. On a log without an embedded server it is always
// the zero Space: the external server's operator watches its disk.
func (l *Log) Space() Space {
	if l.space == nil {
		return Space{}
	}
	l.space.mu.Lock()
	defer l.space.mu.Unlock()
	return l.space.cur
}

// noteNoSpace records that a write failed for want of space, and has the watcher act on it now.
func (l *Log) noteNoSpace(err error) {
	w := l.space
	if w == nil {
		return
	}
	if l.setFull(err.Error()) {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

// setFull marks the disk full; it reports whether it was not already.
func (l *Log) setFull(cause string) bool {
	w := l.space
	w.mu.Lock()
	if w.cur.Full {
		w.mu.Unlock()
		return false
	}
	w.cur.Full, w.cur.Since, w.cur.Cause, w.refused = true, time.Now(), cause, 0
	ev := SpaceEvent{Full: true, Since: w.cur.Since, Cause: cause}
	w.noRoom()
	w.mu.Unlock()
	l.cfg.Logger.Error("eventlog: the log is out of disk space: writes are refused until there is room again",
		"dir", l.cfg.DataDir, "needs free", l.cfg.MinFreeBytes, "cause", cause)
	if l.cfg.OnSpace != nil {
		l.cfg.OnSpace(ev)
	}
	return true
}

// watchSpace runs while the log embeds a server. It looks for streams that failed a write for
// want of space (a failed append says so at once; other processes' appends are found through the
// server's health report, every tick, which also ends the appends waiting for an answer the
// server will not give), and, while the disk is full, for room: once the
// filesystem has MinFreeBytes free it restarts the server, the only way nats-server clears a
// stream's write error, and writes resume.
func (l *Log) watchSpace() {
	w := l.space
	defer close(w.done)
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-w.kick:
		case <-t.C:
		}
		free := l.freeBytes()
		w.mu.Lock()
		w.cur.Free = free
		full := w.cur.Full
		w.mu.Unlock()
		if !full {
			cause := l.serverWriteError()
			if cause == "" {
				continue
			}
			l.setFull(cause)
		}
		if free < l.cfg.MinFreeBytes {
			continue
		}
		l.cfg.Logger.Warn("eventlog: the log's disk has room again: restarting the embedded server to clear its write errors",
			"free", free)
		start := time.Now()
		if err := l.srv.restart(); err != nil {
			// Nothing serves until it starts: keep trying every tick.
			l.cfg.Logger.Error("eventlog: restarting the embedded server", "err", err)
			continue
		}
		if cause := l.serverWriteError(); cause != "" {
			l.cfg.Logger.Error("eventlog: still out of space after a restart", "cause", cause)
			continue
		}
		w.mu.Lock()
		ev := SpaceEvent{Since: w.cur.Since, Until: time.Now(), Refused: w.refused, Cause: w.cur.Cause}
		w.cur.Full, w.cur.Since, w.cur.Cause = false, ev.Until, ""
		w.cur.Restarts++
		w.room, w.noRoom = context.WithCancel(context.Background())
		w.mu.Unlock()
		l.cfg.Logger.Warn("eventlog: writes resume: the log has room again", "was full for", ev.Until.Sub(ev.Since).Round(time.Millisecond),
			"refused", ev.Refused, "restart took", time.Since(start).Round(time.Millisecond))
		if l.cfg.OnSpace != nil {
			l.cfg.OnSpace(ev)
		}
	}
}

// serverWriteError returns the embedded server's report of a stream that failed a write for want
// of space, or "".
func (l *Log) serverWriteError() string {
	s := l.srv.server()
	if s == nil {
		return ""
	}
	h := s.Healthz(&server.HealthzOptions{Details: true})
	for _, e := range h.Errors {
		if isNoSpaceText(e.Error) {
			return e.Error
		}
	}
	if isNoSpaceText(h.Error) {
		return h.Error
	}
	return ""
}

func (l *Log) freeBytes() int64 {
	var st unix.Statfs_t
	if err := unix.Statfs(l.cfg.DataDir, &st); err != nil {
		return 0
	}
	return int64(st.Bavail) * st.Bsize
}

func (l *Log) startSpaceWatch() {
	l.space = &spaceWatch{kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}), interval: 250 * time.Millisecond}
	l.space.room, l.space.noRoom = context.WithCancel(context.Background())
	l.space.cur.Free = l.freeBytes()
	go l.watchSpace()
}

func (l *Log) stopSpaceWatch() {
	if l.space != nil {
		close(l.space.stop)
		<-l.space.done
	}
}

// whileRoom returns a context that ends with ctx or when the disk is found full, whichever comes
// first, and a function to release it.
func (w *spaceWatch) whileRoom(ctx context.Context) (context.Context, func()) {
	w.mu.Lock()
	room := w.room
	w.mu.Unlock()
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(room, func() { cancel(ErrNoSpace) })
	return ctx, func() {
		stop()
		cancel(nil)
	}
}

func noSpaceError(key Key, err error) error {
	return fmt.Errorf("%w: %s not written: %v", ErrNoSpace, key, err)
}
