package nodeagent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/logplane/logplane/dataplane/containerd"
	"github.com/logplane/logplane/dataplane/dataplanetest"
	"github.com/logplane/logplane/dataplane/podnet"
	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/eventlog/eventlogtest"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/nodeagent"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/registry"
)

// agentProcess is how a node agent process is configured in these tests:
// what `logplane agent` is given by its flags, passed to a child (the test
// binary run again) as JSON in an environment variable.
type agentProcess struct {
	LogURL      string
	Creds       []byte // the node's own credential of the log
	NodeName    string
	Containerd  string // daemon socket
	Namespace   string // containerd namespace
	DataDir     string // runtime data (sandboxes, logs)
	StateDir    string // the daemon's state tmpfs: runc's state, FIFOs, pinned netns
	NetStateDir string
	NetworkName string
	Bridge      string
	Subnet      string
	VolumeDir   string
	StreamAddr  string // host:port of the streaming endpoint
	CAPEM       []byte
	CertPEM     []byte // serving certificate of the streaming endpoint
	KeyPEM      []byte
	BackOff     time.Duration
	// SyncFrequency is the agent's (and so the kubelet's) sync period; 0: the default.
	SyncFrequency time.Duration
}

const childEnv = "NODEAGENT_TEST_AGENT"

func TestMain(m *testing.M) {
	if cfg := os.Getenv(childEnv); cfg != "" {
		var p agentProcess
		if err := json.Unmarshal([]byte(cfg), &p); err != nil {
			fmt.Fprintln(os.Stderr, "agent child:", err)
			os.Exit(2)
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		if err := runAgent(ctx, p, nil); err != nil {
			fmt.Fprintln(os.Stderr, "agent child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runAgent runs a node agent as `logplane agent` does: its own connection
// to the log, its own projection and registry, a containerd runtime and the
// streaming endpoint. ready, if not nil, is closed once the agent is ready.
func runAgent(ctx context.Context, p agentProcess, ready chan<- struct{}) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	l, err := eventlog.Open(ctx, eventlog.Config{URL: p.LogURL, Creds: p.Creds})
	if err != nil {
		return err
	}
	defer l.Close()
	cat := builtin.Catalog()
	// A node's credential reads only its feed, and the control plane opens its Secrets, as in
	// `logplane agent` (cmd/logplane's openProcess).
	store, run := projections.New(cat, nil), (*projections.Store).Run
	if l.IsNodeFeed() {
		store, run = projections.New(cat, nil, projections.WithOpener(l.NodeOpener())), (*projections.Store).RunFeed
	}
	storeDone := make(chan error, 1)
	go func() { storeDone <- run(store, ctx, l) }()
	defer func() { <-storeDone }()
	defer cancel()
	reg, err := registry.New(registry.Config{Log: l, Store: store, Catalog: cat})
	if err != nil {
		return err
	}
	network, err := podnet.New(podnet.Config{StateDir: p.NetStateDir, NetNSDir: filepath.Join(p.StateDir, "netns"), NetworkName: p.NetworkName, Bridge: p.Bridge, Subnet: p.Subnet})
	if err != nil {
		return err
	}
	rt, err := containerd.New(ctx, containerd.Config{Address: p.Containerd, Namespace: p.Namespace, DataDir: p.DataDir, Network: network,
		RuncRoot: filepath.Join(p.StateDir, "runc"), FIFODir: filepath.Join(p.StateDir, "fifo")})
	if err != nil {
		return err
	}
	defer rt.Close()
	ver, err := rt.Client().Version(ctx)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", p.StreamAddr)
	if err != nil {
		return err
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	var portNum int32
	fmt.Sscan(port, &portNum)
	a, err := nodeagent.New(nodeagent.Config{
		NodeName:        p.NodeName,
		NodeIP:          "127.0.0.1",
		PodCIDR:         p.Subnet,
		Runtime:         rt,
		RuntimeVersion:  "containerd://" + ver.Version,
		VolumeDir:       p.VolumeDir,
		Registry:        reg,
		Store:           store,
		StreamPort:      portNum,
		MachinePressure: true,
		RenewInterval:   time.Second,
		BackOff:         p.BackOff,
		MaxBackOff:      4 * p.BackOff,
		SyncFrequency:   p.SyncFrequency,
		Logger:          slog.Default(),
	})
	if err != nil {
		ln.Close()
		return err
	}
	tlsConfig, err := nodeagent.ServerTLS(p.CAPEM, p.CertPEM, p.KeyPEM)
	if err != nil {
		ln.Close()
		return err
	}
	srv := nodeagent.NewServer(nil, a)
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Serve(ctx, ln, tlsConfig) }()
	if ready != nil {
		go func() {
			select {
			case <-a.Ready():
				close(ready)
			case <-ctx.Done():
			}
		}()
	}
	err = a.Run(ctx)
	cancel()
	if serr := <-srvDone; err == nil {
		err = serr
	}
	return err
}

// agentConfig describes an agent for the Env's machine and the cluster.
func agentConfig(t testing.TB, c *cluster, env *dataplanetest.Env, node string, caPEM, certPEM, keyPEM []byte) agentProcess {
	return agentProcess{
		LogURL:      c.api.Log.ClientURL(),
		Creds:       eventlogtest.Credentials(t, c.api.Log, eventlog.Identity{Role: eventlog.RoleNode, Name: node}),
		NodeName:    node,
		Containerd:  env.Daemon.Address,
		Namespace:   env.Runtime.Namespace(),
		DataDir:     filepath.Join(env.Dir, "data"),
		StateDir:    env.Daemon.StateDir,
		NetStateDir: filepath.Join(env.Dir, "net"),
		NetworkName: "lpt-" + env.Bridge,
		Bridge:      env.Bridge,
		Subnet:      env.Subnet,
		VolumeDir:   filepath.Join(env.Dir, "volumes"),
		StreamAddr:  "127.0.0.1:0",
		CAPEM:       caPEM,
		CertPEM:     certPEM,
		KeyPEM:      keyPEM,
		BackOff:     time.Second,
	}
}

// startChild runs the agent as a child process (the test binary again);
// kill -9 it with the returned function, which waits for it to exit.
func startChild(t *testing.T, p agentProcess) (kill func()) {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(b))
	out, err := os.Create(filepath.Join(t.TempDir(), "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait() // killed on purpose; its log says the rest
		close(done)
	}()
	killed := false
	kill = func() {
		if killed {
			return
		}
		killed = true
		_ = cmd.Process.Signal(syscall.SIGKILL) // already gone is fine
		<-done
	}
	t.Cleanup(func() {
		kill()
		if t.Failed() {
			if b, err := os.ReadFile(out.Name()); err == nil {
				t.Logf("agent log:\n%s", b)
			}
		}
	})
	return kill
}
