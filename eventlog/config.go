package eventlog

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"
)

// Durability says how an acknowledged append is made to survive kill -9 and power loss.
type Durability int

const (
	// GroupCommit (the default) runs the stream's server with lazy fsync and has the process that
	// embeds it fsync the stream's files itself, once for every group of appends that arrived
	// together: an Append returns only after an fsync that started after its message was stored.
	// Processes that reach the embedded server by URL ask it for the same barrier on the
	// CommitSubject. This is what makes the durable path scale with concurrent writers: one
	// fsync covers every append that was waiting for it. It needs a logplane process embedding
	// the server; for a plain external NATS cluster use ServerSync.
	GroupCommit Durability = iota
	// ServerSync leaves durability to the server: the embedded server is started with
	// sync_always (one fsync per message, about 900 appends/s on a disk doing 1,000 fsyncs/s,
	// whatever the concurrency); an external cluster gives what its own configuration gives
	// (replicas 3 and quorum commit, sync_always if configured).
	ServerSync
	// Lazy acknowledges appends once the server has them in memory or the page cache, with
	// JetStream's default fsync every two minutes: fast, and an acknowledged append can be lost
	// on power loss. For tests and benchmarks, never the default.
	Lazy
)

func (d Durability) String() string {
	switch d {
	case GroupCommit:
		return "group-commit"
	case ServerSync:
		return "server-sync"
	case Lazy:
		return "lazy"
	}
	return fmt.Sprintf("Durability(%d)", int(d))
}

// ParseDurability reads the names String gives.
func ParseDurability(s string) (Durability, error) {
	for _, d := range []Durability{GroupCommit, ServerSync, Lazy} {
		if d.String() == s {
			return d, nil
		}
	}
	return 0, fmt.Errorf("eventlog: unknown durability %q (want group-commit, server-sync or lazy)", s)
}

// Config configures a Log. The zero value plus DataDir runs an embedded server.
type Config struct {
	// URL of a NATS server or cluster to use. Empty: embed a server with its store in DataDir.
	URL string
	// CredsFile is a NATS credentials file (a user JWT and its key's seed) for URL; Creds is the
	// same content given directly. A logplane server requires one (see Log.Credentials).
	CredsFile string
	Creds     []byte
	// Node is set when the credential is a node's (RoleNode): its appends are then commands on
	// the node's own subject, which the control plane checks and appends (ServeNodeCommands).
	// Set from the credential when it is a node's; "*" for the simulated nodes' credential,
	// whose writes go on the subject of the node each names.
	Node string
	// CAFile is a PEM file of the CA that verifies the server's TLS certificate, for a URL whose
	// server requires TLS. Empty: the system's roots.
	CAFile string
	// ServerTLS is the embedded server's TLS configuration (its certificate). Required when
	// Listen is beyond loopback: then every client that connects over the network uses TLS.
	ServerTLS *tls.Config
	// AuthDir holds the keys of the embedded server's trust chain (operator, system account, the
	// logplane account that signs every credential), made at the first start and readable by
	// their owner only. Default DataDir/auth.
	AuthDir string
	// DataDir holds the embedded server's JetStream store. Required when URL is empty.
	DataDir string
	// Listen is the host:port on which the embedded server accepts other processes' clients.
	// Empty: only this process uses it (in-process connection, no socket).
	Listen string
	// Stream is the name of the object stream. Default "LOGPLANE".
	Stream string
	// Prefix starts every subject. Default "lp".
	Prefix string
	// Replicas of the stream on a NATS cluster. Default 1; 3 for production clusters.
	Replicas int
	// Durability of acknowledged appends. Default GroupCommit.
	Durability Durability
	// MaxAge drops events older than this. Default 0: keep the whole history.
	MaxAge time.Duration
	// MaxBytes caps the stream's size, dropping the oldest events. Default 0: no cap.
	MaxBytes int64
	// NoCompression stores the stream's blocks on disk uncompressed. By default they are
	// S2-compressed: history is kept whole, and S2 keeps it on a twelfth of the disk for pod
	// events (23 MB against 277 MB per 100,000; revisions of one pod and pods of one template
	// differ in a few bytes). The price is CPU when a block is read back from disk (a cold
	// rebuild, At, History far back): about 30% more per event replayed (see
	// docs/bench-logspine.md). Changing it affects new blocks only.
	NoCompression bool
	// MaxObjectBytes is the largest encoded object an event may carry; a larger one gets
	// ErrTooLarge. Default 1.5 MiB, the request limit Kubernetes has from etcd, so that a ConfigMap
	// or Secret holding the 1 MiB of data Kubernetes allows fits in any encoding.
	MaxObjectBytes int
	// MaxPayload of the embedded server, which bounds the size of one message. Default 8 MiB.
	// An external server must allow at least MaxObjectBytes plus 4 KiB (NATS defaults to 1 MiB:
	// set max_payload to 8MB in its configuration).
	MaxPayload int32
	// SnapshotsKept is how many snapshots of each projection the snapshot store keeps; older ones
	// are deleted when a new one is put. Default 4.
	SnapshotsKept int
	// MinFreeBytes is the free space on the embedded server's filesystem at which a log that ran
	// out of space takes writes again. Default 16 MiB.
	MinFreeBytes int64
	// OnSpace, if set, is called when the embedded server's disk runs out of space and when it
	// has room again (from the log's own goroutine: it must not block).
	OnSpace func(SpaceEvent)
	// Logger for the log's own messages. Default slog.Default().
	Logger *slog.Logger

	account string // the embedded server's account, under which its store keeps the streams
}

func (c *Config) authDir() string {
	if c.AuthDir != "" {
		return c.AuthDir
	}
	return filepath.Join(c.DataDir, "auth")
}

const (
	defaultStream     = "LOGPLANE"
	defaultPrefix     = "lp"
	defaultMaxPayload = 8 << 20
	// DefaultMaxObjectBytes is the default of Config.MaxObjectBytes.
	DefaultMaxObjectBytes = 3 << 19
	defaultSnapshotsKept  = 4
	defaultMinFreeBytes   = 16 << 20
)

func (c *Config) setDefaults() error {
	if c.Stream == "" {
		c.Stream = defaultStream
	}
	if c.Prefix == "" {
		c.Prefix = defaultPrefix
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = defaultMaxPayload
	}
	if c.MaxObjectBytes == 0 {
		c.MaxObjectBytes = DefaultMaxObjectBytes
	}
	if c.SnapshotsKept == 0 {
		c.SnapshotsKept = defaultSnapshotsKept
	}
	if c.MinFreeBytes == 0 {
		c.MinFreeBytes = defaultMinFreeBytes
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	switch {
	case c.URL == "" && c.DataDir == "":
		return errors.New("eventlog: config needs DataDir for the embedded server, or a URL")
	case c.Replicas < 1 || c.Replicas > 5:
		return fmt.Errorf("eventlog: replicas must be 1 to 5, not %d", c.Replicas)
	case c.MaxAge < 0 || c.MaxBytes < 0 || c.MaxObjectBytes < 0 || c.SnapshotsKept < 0 || c.MinFreeBytes < 0:
		return errors.New("eventlog: retention limits must not be negative")
	case c.MaxAge > 0 && c.MaxAge < time.Second:
		return fmt.Errorf("eventlog: MaxAge %v is under a second", c.MaxAge)
	case c.Durability < GroupCommit || c.Durability > Lazy:
		return fmt.Errorf("eventlog: unknown durability %d", c.Durability)
	}
	return nil
}

// CommitSubject is the subject on which the process embedding the server answers commit-barrier
// requests for GroupCommit appends made by other processes.
func (c *Config) commitSubject() string { return c.Prefix + ".sys.commit" }
