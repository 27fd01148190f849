package eventlog

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// startServer starts the embedded nats-server with JetStream on cfg.DataDir.
func startServer(cfg *Config) (*server.Server, error) {
	opts := &server.Options{
		ServerName:         "logplane",
		JetStream:          true,
		StoreDir:           filepath.Join(cfg.DataDir, "nats"),
		MaxPayload:         cfg.MaxPayload,
		NoSigs:             true,
		NoLog:              true,
		DontListen:         cfg.Listen == "",
		JetStreamMaxMemory: 256 << 20,
		// GroupCommit does its own fsyncs; ServerSync asks the server for one per message. In
		// both of the other cases the server's periodic sync is only a backstop.
		SyncAlways:   cfg.Durability == ServerSync,
		SyncInterval: time.Minute,
	}
	if cfg.Listen != "" {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("eventlog: listen address %q: %w", cfg.Listen, err)
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
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("eventlog: embedded server: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("eventlog: embedded server in %s did not become ready", opts.StoreDir)
	}
	return ns, nil
}

// streamDir is where the embedded server keeps the message blocks of a stream.
func streamMsgsDir(cfg *Config) string {
	return filepath.Join(cfg.DataDir, "nats", "jetstream", server.DEFAULT_GLOBAL_ACCOUNT, "streams", cfg.Stream, "msgs")
}
