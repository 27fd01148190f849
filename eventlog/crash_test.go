package eventlog_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/logplane/logplane/eventlog"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

const crashDirEnv = "LOGPLANE_CRASH_TEST_DIR"

// TestKill9KeepsAcknowledgedAppends runs a child process (this test binary, re-executed) that
// embeds the server with the default durability and appends from many goroutines, writing a
// line for every acknowledged append; the test kills it with SIGKILL in the middle of the
// stream, restarts the log on the same data directory, and checks that every acknowledged
// append is there, with its sequence and content. Three rounds, on the same directory.
func TestKill9KeepsAcknowledgedAppends(t *testing.T) {
	if os.Getenv(crashDirEnv) != "" {
		t.Skip("this is the child of the kill -9 test")
	}
	dir := t.TempDir()
	type ack struct {
		key  eventlog.Key
		body string
	}
	acked := map[uint64]ack{}
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1", "-test.timeout=120s")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, "LOGPLANE_CRASH_ROUND="+strconv.Itoa(round))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killAfter := 300 + 250*round
		n := 0
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 5 || f[0] != "ack" {
				continue
			}
			seq, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				t.Fatalf("child said %q", sc.Text())
			}
			acked[seq] = ack{key: eventlog.Key{Resource: "configmaps", Namespace: f[2], Name: f[3]}, body: f[4]}
			if n++; n == killAfter {
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
			// Lines the child wrote before it died are still read: they were acknowledged too.
		}
		err = cmd.Wait()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: the child ended with %v after %d acks, not by SIGKILL", round, err, n)
		}
		t.Logf("round %d: killed the child after %d acknowledged appends (%d in all)", round, n, len(acked))

		l, err := eventlog.Open(t.Context(), eventlog.Config{DataDir: dir})
		if err != nil {
			t.Fatalf("round %d: reopen: %v", round, err)
		}
		found := map[uint64]eventlog.Record{}
		if err := l.Replay(t.Context(), eventlog.Filter{}, 0, 0, func(r eventlog.Record) error {
			if r.Err != nil {
				return r.Err
			}
			found[r.Seq] = r
			return nil
		}); err != nil {
			t.Fatalf("round %d: replay: %v", round, err)
		}
		l.Close()
		for seq, a := range acked {
			r, ok := found[seq]
			if !ok {
				t.Fatalf("round %d: acknowledged append %d (%s) is lost", round, seq, a.key)
			}
			if eventlog.KeyOf(r.Event) != a.key || string(r.Event.Object) != a.body {
				t.Fatalf("round %d: sequence %d holds %s %q, acknowledged %s %q", round, seq, eventlog.KeyOf(r.Event), r.Event.Object, a.key, a.body)
			}
		}
	}
}

// TestCrashChild is the child of TestKill9KeepsAcknowledgedAppends; it runs only in that role.
// It appends until killed: creates of new keys, and compare-and-set updates of a few shared
// keys, printing "ack <seq> <namespace> <name> <body>" once each append is acknowledged.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("only run by TestKill9KeepsAcknowledgedAppends")
	}
	round := os.Getenv("LOGPLANE_CRASH_ROUND")
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	l, err := eventlog.Open(ctx, eventlog.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	say := func(seq uint64, ns, name, body string) {
		mu.Lock()
		defer mu.Unlock()
		// One write per line, unbuffered: what the parent reads was acknowledged.
		fmt.Fprintf(os.Stdout, "ack %d %s %s %s\n", seq, ns, name, body)
	}
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				ns := "round-" + round
				if w%4 == 0 {
					// Compare-and-set on a shared key.
					name := fmt.Sprintf("shared-%d", w)
					cur, err := l.Get(ctx, eventlog.Key{Resource: "configmaps", Namespace: ns, Name: name})
					expect := eventlog.NoRevision
					if err == nil {
						expect = cur.Seq
					}
					body := fmt.Sprintf("w%d-i%d", w, i)
					seq, err := l.Append(ctx, event(eventv1.ChangeType_CHANGE_TYPE_MODIFIED, ns, name, body), expect)
					if err == nil {
						say(seq, ns, name, body)
					}
					continue
				}
				name := fmt.Sprintf("w%d-%d", w, i)
				body := fmt.Sprintf("v%d", i)
				seq, err := l.Create(ctx, event(eventv1.ChangeType_CHANGE_TYPE_ADDED, ns, name, body))
				if err == nil {
					say(seq, ns, name, body)
				}
			}
		})
	}
	wg.Wait()
	t.Fatal("the child was not killed within a minute")
}
