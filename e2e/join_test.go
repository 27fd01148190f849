package e2e_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// TestJoin: a second machine joins `logplane up`'s cluster as kubeadm join does — a token made
// with `logplane token create --print-join-command` on the control-plane machine, then
// `logplane agent --join URL --token T --ca-cert-hash H` — and its node becomes Ready, holding
// its own credential and certificate and no key of the CA's. The token does not work twice; a
// rogue agent with a CA and a log credential of its own, or with a made-up token, is refused
// and never registers.
func TestJoin(t *testing.T) {
	m := newMachine(t)
	m.loadImages()
	m.start("up", slices.Concat([]string{"up", "--data-dir", m.dir}, m.apiFlags(), m.nodeFlags())...)
	m.waitAPI()
	m.waitNodeReady()

	// The admin's credential of the log is root's only.
	if fi, err := os.Stat(filepath.Join(m.dir, "creds", "admin.creds")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("creds/admin.creds: %v, mode %v; want 0600", err, fi)
	}
	tok := m.start("token", "token", "create", "--data-dir", m.dir, "--nats", m.natsURL(), "--ttl", "10m", "--print-join-command")
	out := tok.waitExited(t, 60*time.Second)
	var joinArgs []string
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "logplane agent "); ok {
			joinArgs = strings.Fields(rest)
		}
	}
	if len(joinArgs) != 6 || joinArgs[0] != "--join" || joinArgs[2] != "--token" || joinArgs[4] != "--ca-cert-hash" {
		t.Fatalf("token create printed no join command:\n%s", out)
	}

	m2 := newMachine(t)
	m2.loadImages()
	agent := func(name string, args ...string) *proc {
		return m2.start(name, slices.Concat([]string{"agent", "--nats", m.natsURL(), "--data-dir", m2.dir,
			"--node-name", name, "--node-ip", "127.0.0.1", "--stream-listen", m2.streamAddr, "--bridge", m2.bridge,
			"--pod-cidr", m2.podCIDR, "--containerd", "own", "--service-proxy=false", "--ingress-http-port=0", "--ingress-https-port=0"}, args)...)
	}
	refused := func(p *proc, want string) {
		t.Helper()
		log := p.waitExited(t, 60*time.Second)
		if p.cmd.ProcessState.ExitCode() == 0 || !strings.Contains(log, want) {
			t.Errorf("logplane %s: exit %d, want a refusal saying %q:\n%s", p.name, p.cmd.ProcessState.ExitCode(), want, tail(p.log, 10))
		}
	}

	// A rogue agent: a CA of its own and a credential signed by an operator of its own.
	rogueDir := t.TempDir()
	acct, _ := nkeys.CreateAccount()
	user, _ := nkeys.CreateUser()
	upub, _ := user.PublicKey()
	uc := jwt.NewUserClaims(upub)
	uc.Pub.Allow.Add(">")
	uc.Sub.Allow.Add(">")
	ujwt, err := uc.Encode(acct)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := user.Seed()
	creds, err := jwt.FormatUserConfig(ujwt, seed)
	if err != nil {
		t.Fatal(err)
	}
	rogueCreds := filepath.Join(rogueDir, "rogue.creds")
	if err := os.WriteFile(rogueCreds, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	refused(agent("rogue", "--nats-creds", rogueCreds, "--join", joinArgs[1], "--token", "abcdef.0123456789abcdef", "--ca-cert-hash", joinArgs[5]),
		"the bootstrap token is unknown, expired or already used")
	// The credential alone (simulated nodes take the credential given): the log refuses it.
	refused(m2.start("rogue-creds", "agent", "--nats", m.natsURL(), "--runtime", "sim", "--nodes", "1", "--node-prefix", "rogue",
		"--data-dir", rogueDir, "--nats-creds", rogueCreds, "--stream-listen", "127.0.0.1:0"), "not authorized")
	if r := m.kubectl("get", "node", "rogue"); r.err == nil {
		t.Errorf("the rogue node registered: %s", r)
	}
	if r := m.kubectl("get", "node", "rogue-0"); r.err == nil {
		t.Errorf("the rogue node registered: %s", r)
	}

	// The real join.
	joined := agent("e2e-joined", joinArgs...)
	eventually(t, 90*time.Second, func() error {
		if r := m.kubectl("wait", "--for=condition=Ready", "node/e2e-joined", "--timeout=20s"); r.err != nil {
			return fmt.Errorf("node not ready: %s", r)
		}
		return nil
	})
	m.requireRunning(joined)
	id := filepath.Join(m2.dir, "agent", "identity")
	for _, f := range []string{"node.creds", "node.key"} {
		if fi, err := os.Stat(filepath.Join(id, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want 0600", f, err, fi)
		}
	}
	// It reads only its feed (reconcilers/nodefeed): a pod bound to it gets its Secret, which
	// the control plane opened for it, with no key-encryption key on the machine.
	m.apply(`apiVersion: v1
kind: Secret
metadata:
  name: joined-secret
stringData:
  word: sesame
---
apiVersion: v1
kind: Pod
metadata:
  name: on-joined
spec:
  nodeName: e2e-joined
  restartPolicy: Never
  containers:
  - name: c
    image: logplane.local/busybox:latest
    command: ["cat", "/s/word"]
    volumeMounts:
    - name: s
      mountPath: /s
  volumes:
  - name: s
    secret:
      secretName: joined-secret
`)
	eventually(t, 90*time.Second, func() error {
		if phase := m.jsonpath("pod/on-joined", "{.status.phase}"); phase != "Succeeded" {
			return fmt.Errorf("pod on the joined node: phase %q", phase)
		}
		return nil
	})
	if out := strings.TrimSpace(m.k("logs", "on-joined")); out != "sesame" {
		t.Errorf("the pod on the joined node read %q from its Secret, want sesame", out)
	}
	if err := filepath.Walk(m2.dir, func(path string, fi os.FileInfo, err error) error {
		if err == nil && (fi.Name() == "ca.key" || fi.Name() == "admin.creds" || fi.Name() == "admin.key" || fi.Name() == "kek.json") {
			t.Errorf("the joined machine holds %s", path)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	joined.stop(t)

	// The token was spent.
	again := agent("e2e-again2", "--join", joinArgs[1], "--token", joinArgs[3], "--ca-cert-hash", joinArgs[5])
	refused(again, "the bootstrap token is unknown, expired or already used")
}
