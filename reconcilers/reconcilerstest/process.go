package reconcilerstest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/projections"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/sets"
	"github.com/logplane/logplane/registry"
)

// Environment of a reconcile process started by StartProcess.
const (
	envRole       = "LOGPLANE_TEST_RECONCILE_ROLE" // "workloads" or "delay"
	envURL        = "LOGPLANE_TEST_LOG_URL"
	envCreds      = "LOGPLANE_TEST_LOG_CREDS"
	envHolder     = "LOGPLANE_TEST_HOLDER"
	envLeaseTTL   = "LOGPLANE_TEST_LEASE_TTL"
	envDelay      = "LOGPLANE_TEST_DELAY"
	envWorkers    = "LOGPLANE_TEST_WORKERS"
	envNodeGrace  = "LOGPLANE_TEST_NODE_GRACE"
	statsInterval = 200 * time.Millisecond
)

// ProcessStats is what a reconcile process reports, several times a second, on its standard
// output.
type ProcessStats struct {
	Holder string `json:"holder"`
	// Owned is how many of the engine's partitions the process holds.
	Owned int `json:"owned"`
	// Keys counts the distinct keys each reconciler reconciled; Reconciles the reconciles.
	Keys       map[string]int `json:"keys"`
	Reconciles map[string]int `json:"reconciles"`
}

// Process is a reconcile process: this test binary run again in the reconcile role, as `logplane
// reconcile` runs, on a log it reaches by URL.
type Process struct {
	Holder string
	cmd    *exec.Cmd

	mu    sync.Mutex
	stats ProcessStats
	done  chan struct{}
}

// ProcessOptions shape a reconcile process.
type ProcessOptions struct {
	// Role is "workloads" (the workload reconcilers and the scheduler, as `logplane reconcile`
	// runs them) or "delay" (one reconciler over ConfigMaps that takes Delay per key and writes
	// an annotation, for the work-sharing benchmark). Default "workloads".
	Role string
	// LeaseTTL of the engine's partitions. Default 2s.
	LeaseTTL time.Duration
	Delay    time.Duration
	Workers  int
	// NodeGrace is the node lifecycle's grace period. Default 40s.
	NodeGrace time.Duration
	// Creds is the process's credential of the log (Cluster.ReconcilerCredentials).
	Creds []byte
}

// StartProcess starts a reconcile process on the log at url. The test binary must call
// MaybeRunProcess from TestMain.
func StartProcess(t testing.TB, url, holder string, opts ProcessOptions) *Process {
	t.Helper()
	if opts.Role == "" {
		opts.Role = "workloads"
	}
	if opts.LeaseTTL == 0 {
		opts.LeaseTTL = 2 * time.Second
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envRole+"="+opts.Role, envURL+"="+url, envHolder+"="+holder,
		envLeaseTTL+"="+opts.LeaseTTL.String(), envDelay+"="+opts.Delay.String(), envWorkers+"="+strconv.Itoa(opts.Workers),
		envNodeGrace+"="+opts.NodeGrace.String(), envCreds+"="+string(opts.Creds))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = testWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatalf("reconcilerstest: starting a reconcile process: %v", err)
	}
	p := &Process{Holder: holder, cmd: cmd, done: make(chan struct{})}
	go p.read(out)
	t.Cleanup(func() {
		p.Kill()
	})
	return p
}

func (p *Process) read(r io.Reader) {
	defer close(p.done)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var st ProcessStats
		if err := json.Unmarshal(sc.Bytes(), &st); err != nil {
			continue // not a stats line
		}
		p.mu.Lock()
		p.stats = st
		p.mu.Unlock()
	}
}

// Stats returns the latest stats the process reported.
func (p *Process) Stats() ProcessStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// CPU returns the CPU time the process has used so far (user and system), from /proc.
func (p *Process) CPU() (time.Duration, error) {
	return ProcessCPU(p.cmd.Process.Pid)
}

// ProcessCPU returns the CPU time (user and system) a process has used, from /proc.
func ProcessCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command may hold spaces: fields count from the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("reconcilerstest: bad /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("reconcilerstest: short /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("reconcilerstest: bad /proc/%d/stat", pid)
	}
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks, nil
}

// Kill kills the process with SIGKILL (kill -9) and waits for it.
func (p *Process) Kill() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL) // it may be gone already
	_ = p.cmd.Wait()                          // a killed process exits with an error
	<-p.done
}

// MaybeRunProcess runs the reconcile role and exits if this process was started by
// StartProcess; otherwise it returns at once. Call it first in TestMain.
func MaybeRunProcess() {
	role := os.Getenv(envRole)
	if role == "" {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if path := os.Getenv("LOGPLANE_TEST_CPUPROFILE"); path != "" {
		f, err := os.Create(fmt.Sprintf("%s.%d", path, os.Getpid()))
		if err == nil {
			if err := pprof.StartCPUProfile(f); err == nil {
				go func() {
					time.Sleep(15 * time.Second)
					pprof.StopCPUProfile()
					f.Close()
				}()
			}
		}
	}
	if err := runProcess(ctx, role); err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "reconcile process:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// keyCounter wraps a reconciler to count the keys it reconciles.
type keyCounter struct {
	mu         sync.Mutex
	keys       map[string]map[eventlog.Key]bool
	reconciles map[string]int
}

func (k *keyCounter) wrap(name string, inner engine.Reconciler) engine.Reconciler {
	return engine.ReconcilerFunc(func(ctx context.Context, req engine.Request) (engine.Result, error) {
		k.mu.Lock()
		if k.keys[name] == nil {
			k.keys[name] = map[eventlog.Key]bool{}
		}
		k.keys[name][req.Key] = true
		k.reconciles[name]++
		k.mu.Unlock()
		return inner.Reconcile(ctx, req)
	})
}

func runProcess(ctx context.Context, role string) error {
	holder := os.Getenv(envHolder)
	ttl, err := time.ParseDuration(os.Getenv(envLeaseTTL))
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	l, err := eventlog.Open(ctx, eventlog.Config{URL: os.Getenv(envURL), Creds: []byte(os.Getenv(envCreds)), Logger: logger})
	if err != nil {
		return err
	}
	defer l.Close()
	store := projections.New(builtin.Catalog(), logger)
	go func() { _ = store.Run(ctx, l) }() // ends with ctx
	reg, err := registry.New(registry.Config{Log: l, Store: store, Logger: logger})
	if err != nil {
		return err
	}
	if _, err := reg.ConsistentRead(ctx); err != nil {
		return err
	}
	counter := &keyCounter{keys: map[string]map[eventlog.Key]bool{}, reconciles: map[string]int{}}
	// engineFor returns an engine sharing the partitions of set with the other processes.
	engineFor := func(set string) (*engine.Engine, error) {
		leases, err := l.Leases(ctx, "reconcilers-"+set, ttl)
		if err != nil {
			return nil, err
		}
		return engine.New(store, engine.Options{Leases: leases, Holder: holder, Partitions: 64, Logger: logger,
			Registry: reg, Host: holder, Wrap: counter.wrap}), nil
	}
	var engines []*engine.Engine // the first one's partitions are reported
	switch role {
	case "workloads":
		burst, _ := strconv.Atoi(os.Getenv("LOGPLANE_TEST_BURST")) // 0: the default
		grace, err := time.ParseDuration(os.Getenv(envNodeGrace))
		if err != nil {
			return err
		}
		opts := sets.Options{BurstReplicas: burst, NodeGracePeriod: grace}
		for _, set := range []string{sets.Workloads, sets.Scheduler} {
			e, err := engineFor(set)
			if err != nil {
				return err
			}
			if err := sets.Setup(ctx, e, set, opts); err != nil {
				return err
			}
			engines = append(engines, e)
		}
	case "delay":
		delay, err := time.ParseDuration(os.Getenv(envDelay))
		if err != nil {
			return err
		}
		workers, _ := strconv.Atoi(os.Getenv(envWorkers)) // 0: the engine's default
		e, err := engineFor("delay")
		if err != nil {
			return err
		}
		e.Register(DelayReconciler(reg, delay, workers))
		engines = append(engines, e)
	default:
		return fmt.Errorf("unknown role %q", role)
	}
	var runs []func(context.Context) error
	for _, e := range engines {
		runs = append(runs, e.Run)
	}
	e := engines[0]
	errs := make(chan error, len(runs))
	for _, run := range runs {
		go func() { errs <- run(ctx) }()
	}
	t := time.NewTicker(statsInterval)
	defer t.Stop()
	enc := json.NewEncoder(os.Stdout)
	for {
		select {
		case <-ctx.Done():
			for range runs {
				<-errs
			}
			return nil
		case err := <-errs:
			return err
		case <-t.C:
		}
		st := ProcessStats{Holder: holder, Keys: map[string]int{}, Reconciles: map[string]int{}}
		if p := e.Partitions(); p != nil {
			st.Owned = len(p.Owned())
		}
		counter.mu.Lock()
		for name, ks := range counter.keys {
			st.Keys[name] = len(ks)
		}
		for name, n := range counter.reconciles {
			st.Reconciles[name] = n
		}
		counter.mu.Unlock()
		if err := enc.Encode(st); err != nil {
			return err
		}
	}
}

// DelayReconciler is the reconciler of the work-sharing benchmark: for each ConfigMap it waits
// delay (standing for a call to a remote system), then records that it was done with an
// annotation, through the registry.
func DelayReconciler(reg *registry.Registry, delay time.Duration, workers int) engine.Registration {
	cms, _ := reg.Catalog().ByGroupResource(schema.GroupResource{Resource: "configmaps"}) // always served
	return engine.Registration{
		Name: "delay", For: schema.GroupResource{Resource: "configmaps"}, Workers: workers,
		Reconciler: engine.ReconcilerFunc(func(ctx context.Context, req engine.Request) (engine.Result, error) {
			if req.Key.Namespace != "default" {
				return engine.Result{}, nil
			}
			if delay > 0 {
				select {
				case <-ctx.Done():
					return engine.Result{}, ctx.Err()
				case <-time.After(delay):
				}
			}
			_, err := reg.Modify(ctx, cms, req.Key.Namespace, req.Key.Name, registry.Request{Actor: registry.Reconciler("delay"), Cause: req.Cause},
				registry.UpdateOptions{}, func(cur runtime.Object) (runtime.Object, error) {
					m := cur.(metav1.Object)
					a := m.GetAnnotations()
					if a["done"] == "true" {
						return cur, nil
					}
					if a == nil {
						a = map[string]string{}
					}
					a["done"] = "true"
					m.SetAnnotations(a)
					return cur, nil
				})
			return engine.Result{}, err
		}),
	}
}
