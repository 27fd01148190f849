package eventlog

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"golang.org/x/sys/unix"

	"github.com/logplane/logplane/durablefile"
)

// embedded is the nats-server this process runs in-process. The log can restart it (same
// options, same store, same port) to clear a stream's write error once the disk has room again:
// nats-server keeps a stream that failed a write (ENOSPC) failing every write until it is
// restarted. Clients in this process reach it through InProcessConn, which always gives the
// current server, so they reconnect by themselves; clients of other processes reconnect to the
// same port.
type embedded struct {
	opts *server.Options
	auth *authority
	lock *os.File // flocked while the server may run: one process per store

	mu  sync.Mutex
	srv *server.Server // nil while restarting or once shut down
}

// startServer starts the embedded nats-server with JetStream on cfg.DataDir.
func startServer(cfg *Config) (*embedded, error) {
	storeDir := filepath.Join(cfg.DataDir, "nats")
	opts := &server.Options{
		ServerName: "logplane",
		JetStream:  true,
		StoreDir:   storeDir,
		MaxPayload: cfg.MaxPayload,
		// A credential's permissions travel in its JWT on the CONNECT line: a reconciler's,
		// with every lease bucket of its sets, is larger than the default 4 KiB.
		MaxControlLine:     64 << 10,
		NoSigs:             true,
		NoLog:              true,
		DontListen:         cfg.Listen == "",
		JetStreamMaxMemory: 256 << 20,
		// GroupCommit does its own fsyncs; ServerSync asks the server for one per message. In
		// both of the other cases the server's periodic sync is only a backstop.
		SyncAlways:   cfg.Durability == ServerSync,
		SyncInterval: time.Minute,
	}
	// Without a limit the server takes 75% of the space free when it starts as its limit, so a
	// server restarted on a nearly full disk would refuse every write as over its limit even
	// once the disk has room. The log may use the whole filesystem; running out of it is
	// handled (see watchSpace), and retention is the stream's MaxBytes and MaxAge.
	if size, err := filesystemSize(cfg.DataDir); err == nil {
		opts.JetStreamMaxStore = size
	}
	if cfg.Listen != "" {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("eventlog: listen address %q: %w", cfg.Listen, err)
		}
		if !loopback(host) {
			if cfg.ServerTLS == nil {
				return nil, fmt.Errorf("eventlog: the embedded server listens beyond loopback (%s) and has no TLS certificate", cfg.Listen)
			}
			opts.TLSConfig = cfg.ServerTLS
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("eventlog: listen port %q: %w", port, err)
		}
		if p == 0 {
			p = server.RANDOM_PORT
		}
		opts.Host, opts.Port = host, p
	}
	lock, err := lockStore(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	auth, err := loadAuthority(cfg.authDir())
	if err != nil {
		lock.Close()
		return nil, err
	}
	if err := auth.configure(opts); err != nil {
		lock.Close()
		return nil, err
	}
	cfg.account = auth.accPub
	if err := adoptGlobalStore(storeDir, auth.accPub); err != nil {
		lock.Close()
		return nil, err
	}
	e := &embedded{opts: opts, lock: lock, auth: auth}
	if err := e.start(); err != nil {
		lock.Close()
		return nil, err
	}
	if cfg.Listen != "" {
		// A restart listens where the first start did, so other processes find it again.
		if addr, ok := e.srv.Addr().(*net.TCPAddr); ok {
			opts.Port = addr.Port
		}
	}
	return e, nil
}

func (e *embedded) start() error {
	e.opts.TrustedKeys = nil // NewServer derives them from TrustedOperators, and refuses both
	ns, err := server.NewServer(e.opts)
	if err != nil {
		return fmt.Errorf("eventlog: embedded server: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return fmt.Errorf("eventlog: embedded server in %s did not become ready", e.opts.StoreDir)
	}
	e.mu.Lock()
	e.srv = ns
	e.mu.Unlock()
	return nil
}

var errServerDown = errors.New("eventlog: the embedded server is restarting or stopped")

// InProcessConn connects to the current server (nats.InProcessConnProvider).
func (e *embedded) InProcessConn() (net.Conn, error) {
	s := e.server()
	if s == nil {
		return nil, errServerDown
	}
	return s.InProcessConn()
}

func (e *embedded) server() *server.Server {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.srv
}

// restart shuts the server down and starts it again on the same store.
func (e *embedded) restart() error {
	e.stop()
	return e.start()
}

// lockStore takes the store's lock, so that two processes (a running `logplane up` and an
// offline `logplane log check`, say) never run servers on one store. The kernel releases it
// when the process ends, kill -9 included.
func lockStore(dataDir string) (*os.File, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("eventlog: %w", err)
	}
	path := filepath.Join(dataDir, "lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("eventlog: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is in use by another process (stop it, or reach its log with --nats)", ErrLocked, dataDir)
		}
		return nil, fmt.Errorf("eventlog: locking %s: %w", path, err)
	}
	return f, nil
}

// close stops the server for good and releases the store.
func (e *embedded) close() {
	e.stop()
	if e.lock != nil {
		e.lock.Close()
		e.lock = nil
	}
}

func (e *embedded) stop() {
	e.mu.Lock()
	s := e.srv
	e.srv = nil
	e.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

func (e *embedded) clientURL() string {
	if s := e.server(); s != nil {
		return s.ClientURL()
	}
	return ""
}

// filesystemSize is the size of the filesystem that holds dir (or would hold it).
func filesystemSize(dir string) (int64, error) {
	for d := dir; ; d = filepath.Dir(d) {
		var st unix.Statfs_t
		err := unix.Statfs(d, &st)
		if err == nil {
			return int64(st.Blocks) * st.Bsize, nil
		}
		if filepath.Dir(d) == d {
			return 0, err
		}
	}
}

// streamMsgsDir is where the embedded server keeps the message blocks of a stream.
func streamMsgsDir(cfg *Config, stream string) string {
	return filepath.Join(cfg.DataDir, "nats", "jetstream", cfg.account, "streams", stream, "msgs")
}

// loopback reports whether host is a loopback address or localhost.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// adoptGlobalStore moves the streams of a store made before the server required
// authentication (kept under the global account, $G) to the logplane account, whose streams
// the server now serves. It runs with the store locked and the server stopped.
func adoptGlobalStore(storeDir, account string) error {
	js := filepath.Join(storeDir, "jetstream")
	old, cur := filepath.Join(js, server.DEFAULT_GLOBAL_ACCOUNT), filepath.Join(js, account)
	if _, err := os.Stat(old); err != nil {
		return nil // nothing to adopt (or nothing readable: the server will say)
	}
	if _, err := os.Stat(cur); err == nil {
		return fmt.Errorf("eventlog: the store %s has streams under both %s and %s", js, server.DEFAULT_GLOBAL_ACCOUNT, account)
	}
	if err := os.Rename(old, cur); err != nil {
		return fmt.Errorf("eventlog: adopting the store of the global account: %w", err)
	}
	if err := durablefile.SyncDir(js); err != nil {
		return fmt.Errorf("eventlog: adopting the store of the global account: %w", err)
	}
	return nil
}
