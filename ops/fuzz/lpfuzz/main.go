// Command lpfuzz sends fuzzed requests to a logplane API server on this machine and counts the
// answers by status code: mutated manifests (creates and updates of every kind of the catalog),
// mutated JSON, merge, strategic merge and apply patches, query strings, headers, paths and
// bodies. It fails (exit 1) on any 500, on a 5xx that is no Kubernetes Status, and on an error
// answer that is no Status; a crash of the in-process server is a crash of this program.
//
// By default it runs its own server in-process (an embedded log in -data-dir, plain HTTP on
// 127.0.0.1, a bearer token); with -kubeconfig it fuzzes the server that kubeconfig names, which
// must be on a loopback address (`logplane up`). ops/fuzz/run.sh runs it, then
// `logplane log check` on the data directory. Only traffic to 127.0.0.0/8 or ::1 is sent.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"k8s.io/apiserver/pkg/authentication/token/tokenfile"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"sigs.k8s.io/yaml"

	"github.com/logplane/logplane/apiserver"
	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/kinds/builtin"
)

func main() {
	n := flag.Int64("n", 1_000_000, "requests to send")
	duration := flag.Duration("duration", time.Hour, "stop after this long even if fewer requests were sent")
	workers := flag.Int("workers", 16, "concurrent clients")
	keepAlive := flag.Bool("keepalive", true, "reuse HTTP/1.1 connections to the in-process server (false: one connection per request)")
	dataDir := flag.String("data-dir", "", "data directory of the in-process server (required without -kubeconfig)")
	kubeconfig := flag.String("kubeconfig", "", "fuzz the server of this kubeconfig (on a loopback address) instead of an in-process one")
	seedFile := flag.String("seed", "apiserver/testdata/seed.yaml", "manifests to mutate, besides one minimal object of each kind")
	failures := flag.String("failures", "", "file to write the requests that failed to (default: stderr only)")
	randSeed := flag.Uint64("rand", uint64(time.Now().UnixNano()), "random seed (print-out shows it, to replay a run)")
	flag.Parse()
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	// k8s.io/apiserver logs every query it cannot parse, whole (megabytes of fuzz): not here.
	kfs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(kfs)
	for k, v := range map[string]string{"logtostderr": "false", "alsologtostderr": "false", "stderrthreshold": "FATAL"} {
		_ = kfs.Set(k, v) // flags klog itself defines
	}
	klog.SetOutput(io.Discard)
	if err := run(*n, *duration, *workers, *keepAlive, *dataDir, *kubeconfig, *seedFile, *failures, *randSeed); err != nil {
		fmt.Fprintln(os.Stderr, "lpfuzz:", err)
		os.Exit(1)
	}
}

const token = "lpfuzz-admin-token"

func run(n int64, duration time.Duration, workers int, keepAlive bool, dataDir, kubeconfig, seedFile, failuresPath string, randSeed uint64) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// An interrupt ends the run early, with its report.
	interrupted, stopInterrupt := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopInterrupt()
	var (
		base   string
		client *http.Client
		header = http.Header{}
		stop   = func() error { return nil }
	)
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return err
		}
		if err := loopback(cfg.Host); err != nil {
			return err
		}
		tr, err := rest.TransportFor(cfg)
		if err != nil {
			return err
		}
		base, client = strings.TrimSuffix(cfg.Host, "/"), &http.Client{Transport: tr}
	} else {
		if dataDir == "" {
			return errors.New("-data-dir or -kubeconfig is required")
		}
		var err error
		base, stop, err = serve(ctx, dataDir)
		if err != nil {
			return err
		}
		client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers * 2, DisableCompression: true, DisableKeepAlives: !keepAlive}}
		header.Set("Authorization", "Bearer "+token)
	}
	g, err := newGenerator(seedFile)
	if err != nil {
		return err
	}
	f := &fuzzer{base: base, client: client, header: header, g: g, codes: map[int]int64{}}
	if failuresPath != "" {
		fw, err := os.Create(failuresPath)
		if err != nil {
			return err
		}
		defer fw.Close()
		f.failOut = fw
	}
	fmt.Printf("lpfuzz: %d requests, %d workers, at most %s, against %s, -rand %d\n", n, workers, duration, base, randSeed)
	f.fixtures(rand.New(rand.NewPCG(randSeed, 0)))
	start := time.Now()
	deadline := start.Add(duration)
	var sent atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(randSeed, uint64(w)+1))
			for i := 0; ; i++ {
				if sent.Add(1) > n || time.Now().After(deadline) || interrupted.Err() != nil {
					return
				}
				if i%2000 == 1999 {
					f.fixtures(rnd) // deletes and deletecollections take them away
				}
				f.one(ctx, rnd)
			}
		}()
	}
	progress := time.NewTicker(30 * time.Second)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
wait:
	for {
		select {
		case <-done:
			break wait
		case <-progress.C:
			fmt.Printf("lpfuzz: %s: %d requests, %d failures\n", time.Since(start).Round(time.Second), f.total.Load(), f.failed.Load())
		}
	}
	progress.Stop()
	elapsed := time.Since(start)
	if err := stop(); err != nil {
		return fmt.Errorf("stopping the server: %w", err)
	}
	f.report(os.Stdout, elapsed)
	if k := f.failed.Load(); k > 0 {
		return fmt.Errorf("%d of %d requests failed (a 500, a 5xx that is no Status, or an error answer that is no Status)", k, f.total.Load())
	}
	return nil
}

// loopback refuses a server that is not on this machine.
func loopback(host string) error {
	u, err := url.Parse(host)
	if err != nil {
		return err
	}
	h := u.Hostname()
	if h == "localhost" {
		return nil
	}
	if ip := net.ParseIP(h); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("lpfuzz sends only to loopback addresses, not %s", host)
}

// serve runs an API server over an embedded log in dataDir, on plain HTTP on 127.0.0.1, with a
// bearer token of system:masters; stop ends it and closes the log.
func serve(ctx context.Context, dataDir string) (string, func() error, error) {
	ctx, cancel := context.WithCancel(ctx)
	l, err := eventlog.Open(ctx, eventlog.Config{DataDir: filepath.Join(dataDir, "log")})
	if err != nil {
		cancel()
		return "", nil, err
	}
	tokens := tokenfile.New(map[string]*user.DefaultInfo{token: {Name: "lpfuzz", UID: "lpfuzz", Groups: []string{user.SystemPrivilegedGroup}}})
	srv, err := apiserver.New(apiserver.Config{Log: l, Tokens: tokens})
	if err != nil {
		cancel()
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		return "", nil, err
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx, ln) }()
	base := "http://" + ln.Addr().String()
	for i := 0; ; i++ {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if i > 600 {
			cancel()
			return "", nil, fmt.Errorf("the server did not become ready: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return base, func() error {
		cancel()
		err := <-errc
		if cerr := l.Close(); err == nil {
			err = cerr
		}
		return err
	}, nil
}

// fuzzer sends requests and counts the answers.
type fuzzer struct {
	base     string
	client   *http.Client
	header   http.Header
	g        *generator
	mu       sync.Mutex
	codes    map[int]int64
	total    atomic.Int64
	unsent   atomic.Int64
	failed   atomic.Int64
	failOut  io.Writer
	samples  int
	dumpOnce sync.Once
}

// request is one fuzzed request.
type request struct {
	method, path string
	query        string
	header       http.Header
	body         []byte
}

func (f *fuzzer) one(ctx context.Context, rnd *rand.Rand) {
	rq := f.g.request(rnd)
	code, ct, body, err := f.send(ctx, rq)
	if err != nil && len(rq.body) > 256<<10 && errors.Is(err, syscall.ECONNRESET) {
		// Go's server answered before reading a large body (a 4xx about the URL or the query)
		// and, with more than 256 KiB of it unread, closed the connection: the client, still
		// writing the body, sees the connection reset instead of the answer.
		f.mu.Lock()
		f.codes[-1]++
		f.mu.Unlock()
		f.total.Add(1)
		return
	}
	if err != nil && notHTTP(rq) && !errors.Is(err, context.DeadlineExceeded) {
		// Go's server answered "400 Bad Request" to the request line and closed the connection
		// while the client still wrote the body: the client sees the connection reset.
		code, ct, body, err = http.StatusBadRequest, "text/plain", []byte("400 Bad Request"), nil
	}
	var refused *clientRefused
	if errors.As(err, &refused) {
		// Go's client does not send a URL or header it finds invalid: nothing was sent.
		f.unsent.Add(1)
		return
	}
	f.total.Add(1)
	f.mu.Lock()
	if goRefused(code, ct, body) {
		f.codes[-code]++
	} else {
		f.codes[code]++
	}
	f.mu.Unlock()
	if reason := judge(code, ct, body, err); reason != "" {
		if errors.Is(err, context.DeadlineExceeded) {
			f.dumpOnce.Do(f.dumpGoroutines)
		}
		f.fail(rq, code, body, reason)
	}
}

// dumpGoroutines writes the stacks of every goroutine (the in-process server's among them) to
// stderr, when a request first goes unanswered: they say where it waits.
func (f *fuzzer) dumpGoroutines() {
	fmt.Fprintln(os.Stderr, "lpfuzz: a request went unanswered; the goroutines:")
	_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 1) // stderr: nothing to do if it fails
}

// notHTTP tells a request whose request line is not HTTP: a space or a control character in
// its URL, which Go's client sends as it is.
func notHTTP(rq request) bool {
	return strings.ContainsFunc(rq.path+"?"+rq.query, func(r rune) bool { return r <= ' ' || r == 0x7f })
}

// clientRefused is a request that Go's client would not send.
type clientRefused struct{ err error }

func (e *clientRefused) Error() string { return e.err.Error() }

// goRefused tells the answers of Go's HTTP server itself to what is not HTTP (a request line
// with a space or a control character in its URL, a malformed header): a bare "400 Bad
// Request" written before any handler runs, as kube-apiserver's server writes them too.
func goRefused(code int, ct string, body []byte) bool {
	return code == http.StatusBadRequest && strings.HasPrefix(ct, "text/plain") && strings.HasPrefix(string(body), "400 Bad Request")
}

// judge says what is wrong with an answer, "" if nothing: a 500, an error answer that is no
// Status in the format it says it is in (every error answer of the API is one), a request
// that was not answered.
func judge(code int, ct string, body []byte, err error) string {
	if err != nil {
		return "no answer: " + err.Error()
	}
	if code == http.StatusInternalServerError {
		return "500"
	}
	if code < 400 || len(body) == 0 || goRefused(code, ct, body) {
		return ""
	}
	var st struct{ Kind string }
	switch {
	case strings.HasPrefix(ct, "application/json"):
		err = json.Unmarshal(body, &st)
	case strings.HasPrefix(ct, "application/yaml"):
		err = yaml.Unmarshal(body, &st)
	case strings.HasPrefix(ct, "application/vnd.kubernetes.protobuf"):
		if bytes.HasPrefix(body, []byte("k8s\x00")) && bytes.Contains(body[:min(len(body), 64)], []byte("Status")) {
			st.Kind = "Status"
		}
	}
	if err != nil || st.Kind != "Status" {
		return "an error answer that is no Status"
	}
	return ""
}

// send sends rq; for a success it reads none of the body (a watch streams), for an error the
// Status (at most 1 MiB of it), and its content type.
func (f *fuzzer) send(ctx context.Context, rq request) (int, string, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	u := f.base + rq.path
	if rq.query != "" {
		u += "?" + rq.query
	}
	req, err := http.NewRequestWithContext(ctx, rq.method, u, bytes.NewReader(rq.body))
	if err != nil {
		return 0, "", nil, &clientRefused{err}
	}
	for _, h := range []http.Header{f.header, rq.header} {
		for k, vs := range h {
			for _, v := range vs {
				if strings.ContainsFunc(v, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
					return 0, "", nil, &clientRefused{fmt.Errorf("header %s: a control character", k)}
				}
			}
			req.Header[k] = vs
		}
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	ct := resp.Header.Get("Content-Type")
	if resp.StatusCode < 400 {
		return resp.StatusCode, ct, nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, ct, nil, err
	}
	return resp.StatusCode, ct, b, nil
}

func (f *fuzzer) fail(rq request, code int, body []byte, reason string) {
	f.failed.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.samples >= 200 {
		return
	}
	f.samples++
	b := rq.body
	if len(b) > 4096 {
		b = b[:4096]
	}
	msg := fmt.Sprintf("FAIL %s: %s %s?%.2000s headers=%v code=%d\n  body: %q\n  answer: %.2000s\n", reason, rq.method, rq.path, rq.query, summarize(rq.header), code, b, body)
	fmt.Fprint(os.Stderr, msg)
	if f.failOut != nil {
		fmt.Fprint(f.failOut, msg)
	}
}

func summarize(h http.Header) map[string]string {
	m := map[string]string{}
	for k, vs := range h {
		v := strings.Join(vs, ",")
		if len(v) > 100 {
			v = fmt.Sprintf("%.100s...(%d bytes)", v, len(v))
		}
		m[k] = v
	}
	return m
}

func (f *fuzzer) report(w io.Writer, elapsed time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var codes []int
	for c := range f.codes {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	total := f.total.Load()
	fmt.Fprintf(w, "lpfuzz: %d requests in %s (%.0f/s), %d failures\n", total, elapsed.Round(time.Second), float64(total)/elapsed.Seconds(), f.failed.Load())
	fmt.Fprintf(w, "  (and %d generated requests Go's client would not send)\n", f.unsent.Load())
	for _, code := range codes {
		c := code
		name := http.StatusText(c)
		switch {
		case c == 0:
			name = "no answer"
		case c == -1:
			name = "early answer, large body cut"
			c = 0
		case c < 0:
			name = "(Go's server: not HTTP)"
			c = -c
		}
		fmt.Fprintf(w, "  %3d %-32s %d\n", c, name, f.codes[code])
	}
}

// fixtures creates (again) the objects that requests name: fz-a of every kind, in namespace
// fuzz.
func (f *fuzzer) fixtures(rnd *rand.Rand) {
	ctx := context.Background()
	ns := request{method: "POST", path: "/api/v1/namespaces", header: jsonCT(), body: []byte(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"fuzz"}}`)}
	_, _, _, _ = f.send(ctx, ns) // 409 once it exists
	for _, k := range f.g.kinds {
		obj := f.g.manifest(rnd, k, "fz-a")
		b, err := json.Marshal(obj)
		if err != nil {
			continue // manifests are plain JSON values
		}
		_, _, _, _ = f.send(ctx, request{method: "POST", path: collection(k), header: jsonCT(), body: b}) // 409 when it exists
	}
}

func jsonCT() http.Header { return http.Header{"Content-Type": {"application/json"}} }

// collection is the path of k's objects in namespace fuzz.
func collection(k *kinds.Kind) string {
	p := "/api/" + k.Version
	if k.Group != "" {
		p = "/apis/" + k.Group + "/" + k.Version
	}
	if k.Namespaced {
		p += "/namespaces/fuzz"
	}
	return p + "/" + k.Resource
}

// generator makes fuzzed requests from the catalog and seed manifests.
type generator struct {
	kinds []*kinds.Kind
	seeds map[string][]map[string]any // by apiVersion/kind
}

func newGenerator(seedFile string) (*generator, error) {
	g := &generator{seeds: map[string][]map[string]any{}}
	for _, k := range builtin.Catalog().All() {
		if k.Resource == "namespaces" {
			continue // namespace fuzz holds the rest; deleting it would stop them all
		}
		g.kinds = append(g.kinds, k)
	}
	b, err := os.ReadFile(seedFile)
	if err != nil {
		return nil, err
	}
	for _, doc := range strings.Split(string(b), "\n---\n") {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			return nil, fmt.Errorf("%s: %w", seedFile, err)
		}
		key := fmt.Sprint(m["apiVersion"], "/", m["kind"])
		g.seeds[key] = append(g.seeds[key], m)
	}
	return g, nil
}

// manifest is an object of k named name: a seed manifest of its kind, or a minimal one.
func (g *generator) manifest(rnd *rand.Rand, k *kinds.Kind, name string) map[string]any {
	var m map[string]any
	if s := g.seeds[k.GroupVersion().String()+"/"+k.Kind]; len(s) > 0 {
		m = deepCopy(s[rnd.IntN(len(s))]).(map[string]any)
	} else {
		m = map[string]any{"apiVersion": k.GroupVersion().String(), "kind": k.Kind}
	}
	md, _ := m["metadata"].(map[string]any) // a seed has metadata; a minimal one gets it
	if md == nil {
		md = map[string]any{}
		m["metadata"] = md
	}
	md["name"] = name
	delete(md, "namespace")
	return m
}

func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		l := make([]any, len(v))
		for i, e := range v {
			l[i] = deepCopy(e)
		}
		return l
	}
	return v
}

var (
	patchTypes   = []string{"application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json", "application/apply-patch+yaml"}
	contentTypes = []string{"application/json", "application/yaml", "application/vnd.kubernetes.protobuf", "application/json; charset=utf-8", "text/plain", "", "application/json;;", "multipart/form-data; boundary=x", "application/*"}
	accepts      = []string{"application/json", "application/yaml", "application/vnd.kubernetes.protobuf", "application/json;as=Table;g=meta.k8s.io;v=v1", "application/json;as=Table;g=meta.k8s.io;v=v1beta1",
		"application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1", "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1", "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io",
		"*/*", "text/html", "application/json;q=0", "application/json;as=Table;g=meta.k8s.io;v=v1;includeObject=Object", ";;;", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"}
	queryKeys = []string{"watch", "limit", "continue", "resourceVersion", "resourceVersionMatch", "timeoutSeconds", "labelSelector", "fieldSelector", "allowWatchBookmarks", "sendInitialEvents",
		"dryRun", "fieldManager", "fieldValidation", "force", "gracePeriodSeconds", "propagationPolicy", "orphanDependents", "pretty", "includeObject", "container", "follow", "tailLines",
		"sinceSeconds", "timestamps", "previous", "limitBytes", "command", "stdin", "stdout", "stderr", "tty", "ports", "hash", "verbose"}
	queryValues = []string{"", "0", "1", "-1", "true", "false", "maybe", "TRUE", "All", "Strict", "Warn", "Ignore", "Exact", "NotOlderThan", "Sometimes", "Orphan", "Foreground", "Background",
		"9223372036854775807", "-9223372036854775808", "99999999999999999999", "1.5", "abc", "a=b", "a in (b,c)", "a,!b", "metadata.name=fz-a", "status.phase!=Running", "spec.nodeName=",
		"a in (", "===", "%zz", "Object", "None", "Metadata", "eyJ4IjoxfQ", "x", strings.Repeat("a", 300), "fz-a", "1000000000", "\x00", "🙂", "a b"}
	names = []string{"fz-a", "fz-a", "fz-a", "fz-b", "", "x", "FZ", "a..b", strings.Repeat("n", 300), "%2e%2e", "..", "fz-a/status", "a%2Fb", "🙂"}
	subs  = []string{"", "", "", "status", "scale", "binding", "eviction", "finalize", "log", "exec", "attach", "portforward", "proxy", "token", "ephemeralcontainers", "resize", "bogus"}
)

// request makes one fuzzed request.
func (g *generator) request(rnd *rand.Rand) request {
	k := g.kinds[rnd.IntN(len(g.kinds))]
	rq := request{header: http.Header{}}
	named := collection(k) + "/" + pick(rnd, names)
	if s := pick(rnd, subs); s != "" && rnd.IntN(3) == 0 {
		named += "/" + s
	}
	switch x := rnd.IntN(100); {
	case x < 22: // create
		rq.method, rq.path = "POST", collection(k)
		name := "fz-a"
		if rnd.IntN(2) == 0 {
			name = fmt.Sprintf("fz-%d", rnd.IntN(50))
		}
		rq.body = g.body(rnd, mutate(rnd, g.manifest(rnd, k, name), 0.1))
		rq.header.Set("Content-Type", pickCT(rnd))
	case x < 35: // update
		rq.method, rq.path = "PUT", named
		rq.body = g.body(rnd, mutate(rnd, g.manifest(rnd, k, "fz-a"), 0.1))
		rq.header.Set("Content-Type", pickCT(rnd))
	case x < 60: // patch
		rq.method, rq.path = "PATCH", named
		pt := pick(rnd, patchTypes)
		if rnd.IntN(20) == 0 {
			pt = pick(rnd, contentTypes)
		}
		rq.header.Set("Content-Type", pt)
		rq.body = g.patch(rnd, k, pt)
		if pt == patchTypes[3] && rnd.IntN(10) != 0 {
			rq.query = "fieldManager=lpfuzz"
			if rnd.IntN(3) == 0 {
				rq.query += "&force=true"
			}
		}
	case x < 82: // read
		rq.method = "GET"
		rq.path = collection(k)
		if rnd.IntN(3) == 0 {
			rq.path = named
		}
		if rnd.IntN(10) == 0 {
			rq.header.Set(apiserver.AtHeader, pick(rnd, []string{"1", "0", "2026-01-01T00:00:00Z", "2999-01-01T00:00:00Z", "yesterday", "18446744073709551615"}))
		}
	case x < 90: // delete
		rq.method, rq.path = "DELETE", named
		if rnd.IntN(4) == 0 {
			rq.path = collection(k)
		}
		if rnd.IntN(2) == 0 {
			opts := map[string]any{"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0, "propagationPolicy": "Background",
				"preconditions": map[string]any{"uid": "x", "resourceVersion": "1"}, "dryRun": []any{"All"}}
			rq.body = g.body(rnd, mutate(rnd, opts, 0.3))
			rq.header.Set("Content-Type", pickCT(rnd))
		}
	case x < 95: // anything at all
		rq.method = pick(rnd, []string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "BREW"})
		rq.path = pick(rnd, []string{"/", "/api", "/apis", "/api/v1", "/apis/apps/v1", "/openapi/v2", "/openapi/v3", "/openapi/v3/api/v1", "/version", "/healthz", "/readyz?verbose",
			"/metrics", "/apis/logplane.io/v1/history", "/apis/logplane.io/v1/audit", "/api/v1/watch/namespaces/fuzz/pods", "/api/v1/namespaces/fuzz/pods/fz-a/log",
			"/apis/apps/v1/namespaces/fuzz/deployments/fz-a/scale", "/api/v1/namespaces//pods", "/api//v1", "/apis/x/y/z", "/api/v1/namespaces/fuzz/pods/fz-a/a/b/c", "/%ff", "/api/v1/proxy/x"})
		if rnd.IntN(2) == 0 {
			rq.body = mutateBytes(rnd, []byte(`{"kind":"Pod","apiVersion":"v1","metadata":{"name":"fz-a"}}`))
			rq.header.Set("Content-Type", pickCT(rnd))
		}
	default: // headers and sizes
		rq.method, rq.path = "GET", collection(k)
		switch rnd.IntN(4) {
		case 0:
			rq.header.Set("X-Large", strings.Repeat("h", rnd.IntN(3<<20)))
		case 1:
			rq.query = "labelSelector=" + strings.Repeat("a", rnd.IntN(3<<20))
		case 2:
			rq.method = "POST"
			rq.header.Set("Content-Type", "application/json")
			rq.body = []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"big"},"data":{"a":"` + strings.Repeat("x", 3<<20-100+rnd.IntN(200)) + `"}}`)
			rq.path = "/api/v1/namespaces/fuzz/configmaps"
		default:
			for range rnd.IntN(50) {
				rq.header.Add(pick(rnd, []string{"Accept", "Content-Type", "Impersonate-User", "Impersonate-Group", "User-Agent", "X-Remote-User", apiserver.AtHeader, "Accept-Encoding", "Authorization"}),
					pick(rnd, append(slices.Clone(accepts), queryValues...)))
			}
		}
	}
	if rq.query == "" || rnd.IntN(2) == 0 {
		rq.query = joinQuery(rq.query, g.query(rnd))
	}
	if rq.method == "GET" && rnd.IntN(4) == 0 {
		rq.header.Set("Accept", pick(rnd, accepts))
	}
	return rq
}

func joinQuery(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "&" + b
}

// query is a fuzzed query string: known parameters with values good and bad. A watch is kept
// short, so that its stream ends (the client reads none of it anyway).
func (g *generator) query(rnd *rand.Rand) string {
	v := url.Values{}
	for range rnd.IntN(5) {
		key := pick(rnd, queryKeys)
		if rnd.IntN(30) == 0 {
			key = pick(rnd, queryValues)
		}
		v.Add(key, pick(rnd, queryValues))
	}
	if v.Has("watch") || v.Has("follow") {
		v.Set("timeoutSeconds", pick(rnd, []string{"1", "-1", "0", "abc"}))
	}
	q := v.Encode()
	if rnd.IntN(20) == 0 {
		q = string(mutateBytes(rnd, []byte(q)))
	}
	return q
}

// body encodes a mutated object as JSON or YAML, sometimes mangled byte by byte.
func (g *generator) body(rnd *rand.Rand, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte("{")
	}
	if rnd.IntN(5) == 0 {
		if y, err := yaml.JSONToYAML(b); err == nil {
			b = y
		}
	}
	if rnd.IntN(8) == 0 {
		b = mutateBytes(rnd, b)
	}
	return b
}

// patch is a fuzzed patch of type pt for an object of k.
func (g *generator) patch(rnd *rand.Rand, k *kinds.Kind, pt string) []byte {
	m := g.manifest(rnd, k, "fz-a")
	switch pt {
	case patchTypes[0]:
		var ops []any
		paths := leafPaths(m, "")
		for range 1 + rnd.IntN(4) {
			op := map[string]any{"op": pick(rnd, []string{"add", "remove", "replace", "move", "copy", "test", "bogus"}), "path": pick(rnd, paths)}
			if rnd.IntN(5) == 0 {
				op["path"] = pick(rnd, []string{"", "/", "/-", "/spec/containers/-", "/spec/containers/99", "/metadata/labels/a~1b", "/metadata/~2", "spec", "/spec/ports/-1"})
			}
			op["from"] = pick(rnd, paths)
			op["value"] = randomValue(rnd, 2)
			ops = append(ops, op)
		}
		return g.body(rnd, mutate(rnd, ops, 0.05))
	case patchTypes[3]:
		delete(m["metadata"].(map[string]any), "managedFields")
		return g.body(rnd, mutate(rnd, m, 0.1))
	}
	// A merge or strategic merge patch: part of the object, mutated, with the directives of
	// strategic merge patch thrown in.
	p := map[string]any{}
	for key, v := range m {
		if rnd.IntN(2) == 0 {
			p[key] = v
		}
	}
	v := mutate(rnd, p, 0.15) // at times no map at all
	if rnd.IntN(3) == 0 {
		addDirectives(rnd, v, 0)
	}
	return g.body(rnd, v)
}

// leafPaths are the JSON pointers of v's values.
func leafPaths(v any, prefix string) []string {
	out := []string{prefix}
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			out = append(out, leafPaths(e, prefix+"/"+strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1"))...)
		}
	case []any:
		for i, e := range v {
			out = append(out, leafPaths(e, fmt.Sprintf("%s/%d", prefix, i))...)
		}
		out = append(out, prefix+"/-")
	}
	return out
}

// addDirectives puts strategic merge patch directives into the maps of v.
func addDirectives(rnd *rand.Rand, v any, depth int) {
	m, ok := v.(map[string]any)
	if !ok || depth > 4 {
		return
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch e := m[k].(type) {
		case map[string]any:
			addDirectives(rnd, e, depth+1)
		case []any:
			switch rnd.IntN(5) {
			case 0:
				m["$setElementOrder/"+k] = []any{randomValue(rnd, 1), map[string]any{"name": "x"}}
			case 1:
				m["$deleteFromPrimitiveList/"+k] = []any{randomValue(rnd, 1)}
			case 2:
				m["$retainKeys"] = []any{k, randomValue(rnd, 0)}
			case 3:
				if len(e) > 0 {
					if em, ok := e[0].(map[string]any); ok {
						em["$patch"] = pick(rnd, []string{"delete", "replace", "merge", "bogus"})
					}
				}
			}
			for _, x := range e {
				addDirectives(rnd, x, depth+1)
			}
		}
	}
	if rnd.IntN(6) == 0 {
		m["$patch"] = pick(rnd, []string{"delete", "replace", "merge", "bogus"})
	}
}

// mutate changes the values of v, each with probability p: another value of any type, removed,
// a key added, a list element duplicated.
func mutate(rnd *rand.Rand, v any, p float64) any {
	if rnd.Float64() < p {
		return randomValue(rnd, 2)
	}
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			switch {
			case rnd.Float64() < p/3:
				delete(v, k)
			default:
				v[k] = mutate(rnd, e, p)
			}
		}
		if rnd.Float64() < p {
			v[pick(rnd, []string{"x", "name", "port", "key", "containerPort", "$patch", "apiVersion", "kind", "metadata", "spec", "status", "resourceVersion", "uid", "finalizers", ""})] = randomValue(rnd, 2)
		}
		return v
	case []any:
		for i, e := range v {
			v[i] = mutate(rnd, e, p)
		}
		if len(v) > 0 && rnd.Float64() < p {
			v = append(v, deepCopy(v[rnd.IntN(len(v))]))
		}
		return v
	}
	return v
}

// randomValue is a JSON value of any type, nested up to depth.
func randomValue(rnd *rand.Rand, depth int) any {
	n := 9
	if depth <= 0 {
		n = 7
	}
	switch rnd.IntN(n) {
	case 0:
		return nil
	case 1:
		return rnd.IntN(2) == 0
	case 2:
		return pick(rnd, []any{0, 1, -1, 80, 65536, 1 << 31, -(1 << 31), 1 << 53, 1e308, -1e308, 0.5, 1e-300})
	case 3, 4:
		return pick(rnd, []string{"", "x", "fz-a", "TCP", "UDP", "Always", "None", "ClusterIP", "NodePort", "10.0.0.1", "::1", "nginx", "1Gi", "-1", "100m", "abc",
			"2026-01-01T00:00:00Z", "not a date", "a/b", strings.Repeat("x", 70), strings.Repeat("y", 5000), "\x00", "🙂", "$patch", "IfNotPresent", "RollingUpdate", "25%"})
	case 5:
		return json.Number(pick(rnd, []string{"1e400", "-0", "123456789012345678901234567890", "0.1", "1E3"}))
	case 6:
		return "k8s.io/" + pick(rnd, []string{"x", "y"})
	case 7:
		m := map[string]any{}
		for range rnd.IntN(4) {
			m[pick(rnd, []string{"a", "name", "port", "key", "value", "$patch", "port", "protocol", "image", "containerPort"})] = randomValue(rnd, depth-1)
		}
		return m
	default:
		var l []any
		for range rnd.IntN(4) {
			l = append(l, randomValue(rnd, depth-1))
		}
		return l
	}
}

// mutateBytes mangles b: bytes flipped, cut, doubled or inserted.
func mutateBytes(rnd *rand.Rand, b []byte) []byte {
	b = slices.Clone(b)
	for range 1 + rnd.IntN(4) {
		if len(b) == 0 {
			return []byte{byte(rnd.IntN(256))}
		}
		i := rnd.IntN(len(b))
		switch rnd.IntN(4) {
		case 0:
			b[i] = byte(rnd.IntN(256))
		case 1:
			b = b[:i]
		case 2:
			b = append(b[:i:i], append([]byte(pick(rnd, []string{"{", "}", "[", "]", ",", ":", `"`, "\\", "\x00", "null", "1e999", "\xff"})), b[i:]...)...)
		default:
			b = append(b, b[i:]...)
		}
	}
	return b
}

func pick[T any](rnd *rand.Rand, l []T) T { return l[rnd.IntN(len(l))] }

func pickCT(rnd *rand.Rand) string {
	if rnd.IntN(6) == 0 {
		return pick(rnd, contentTypes)
	}
	return "application/json"
}
