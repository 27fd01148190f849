package probe

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	grpchealth "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/logplane/logplane/dataplane/runtimeapi"
)

type fakeExec struct {
	code  int
	delay time.Duration
}

func (f fakeExec) Exec(ctx context.Context, id string, o runtimeapi.ExecOptions) (int, error) {
	var timeout <-chan time.Time
	if o.Timeout > 0 {
		timeout = time.After(o.Timeout)
	}
	select {
	case <-time.After(f.delay):
	case <-timeout:
		return -1, fmt.Errorf("fake: %w", runtimeapi.ErrExecTimeout)
	case <-ctx.Done():
		return -1, ctx.Err()
	}
	if _, err := o.Stdout.Write([]byte("out")); err != nil {
		return -1, err
	}
	return f.code, nil
}

func TestRun(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.WriteHeader(200)
		case "/slow":
			time.Sleep(2 * time.Second)
		default:
			w.WriteHeader(500)
		}
	}))
	t.Cleanup(srv.Close)
	host, portS, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(portS) // the test server's own port
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()
	target := Target{PodIP: host, ContainerID: "c", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: int32(port)}}}
	httpProbe := func(path string, p intstr.IntOrString) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: p}}, TimeoutSeconds: 1}
	}
	tests := []struct {
		name    string
		probe   *corev1.Probe
		exec    Execer
		want    bool
		wantErr bool
	}{
		{"http ok", httpProbe("/ok", intstr.FromInt(port)), nil, true, false},
		{"http named port", httpProbe("/ok", intstr.FromString("http")), nil, true, false},
		{"http 500", httpProbe("/bad", intstr.FromInt(port)), nil, false, false},
		{"http timeout", httpProbe("/slow", intstr.FromInt(port)), nil, false, false},
		{"http unknown port name", httpProbe("/ok", intstr.FromString("nope")), nil, false, true},
		{"tcp ok", &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt(port)}}}, nil, true, false},
		{"tcp refused", &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt(closedPort)}}}, nil, false, false},
		{"exec ok", &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}, fakeExec{}, true, false},
		{"exec fails", &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"false"}}}}, fakeExec{code: 1}, false, false},
		{"exec timeout", &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"sleep"}}}}, fakeExec{delay: 3 * time.Second}, false, false},
		{"no handler", &corev1.Probe{}, nil, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := target
			tg.Exec = tt.exec
			start := time.Now()
			res, err := Run(t.Context(), tt.probe, tg)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, want error %v", err, tt.wantErr)
			}
			if res.Success != tt.want {
				t.Fatalf("success %v, want %v (%s)", res.Success, tt.want, res.Message)
			}
			if d := time.Since(start); d > 1500*time.Millisecond {
				t.Fatalf("took %s, timeout is 1s", d)
			}
		})
	}
}

// TestMessages checks that failures read as the kubelet's probers word them
// (pkg/probe/tcp, http, exec, grpc): the event is "<Kind> probe failed: " and this.
func TestMessages(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	_, closedPort, _ := net.SplitHostPort(closedAddr) // from a listener: always host:port

	res := TCP(t.Context(), closedAddr, time.Second)
	if want := "dial tcp " + closedAddr + ": connect: connection refused"; res.Success || res.Message != want {
		t.Errorf("tcp: %+v, want message %q", res, want)
	}

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/moved":
			http.Redirect(w, r, "http://127.0.0.2:1/elsewhere", http.StatusFound)
		case "/ua":
			fmt.Fprint(w, r.Header.Get("User-Agent"))
		default:
			w.WriteHeader(503)
		}
	}))
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String()) // from a listener: always host:port
	get := func(path, p string) Result {
		req, err := NewHTTPRequest(t.Context(), &corev1.HTTPGetAction{Path: path, Port: intstr.Parse(p)}, nil, "127.0.0.1", "probe")
		if err != nil {
			t.Fatal(err)
		}
		return HTTPGet(req, time.Second)
	}
	if res := get("/down", port); res.Success || res.Message != "HTTP probe failed with statuscode: 503" {
		t.Errorf("http 503: %+v", res)
	}
	if res := get("/ua", port); !res.Success || res.Message != "kube-probe/1.34" {
		t.Errorf("http user agent: %+v", res)
	}
	if res := get("/moved", port); !res.Success || !res.Warning || !strings.HasPrefix(res.Message, "Probe terminated redirects, Response body: ") {
		t.Errorf("http redirect elsewhere: %+v", res)
	}
	want := `Get "http://127.0.0.1:` + closedPort + `/healthz": dial tcp 127.0.0.1:` + closedPort + `: connect: connection refused`
	if res := get("/healthz", closedPort); res.Success || res.Message != want {
		t.Errorf("http refused: %q, want %q", res.Message, want)
	}

	res, err = Exec(t.Context(), fakeExec{code: 1}, "c", []string{"false"}, time.Second)
	if err != nil || res.Success || res.Message != "out" {
		t.Errorf("exec exit 1: %+v %v (the kubelet's message is the output)", res, err)
	}
	res, err = Exec(t.Context(), fakeExec{delay: 5 * time.Second}, "c", []string{"sleep", "5"}, time.Second)
	if err != nil || res.Success || res.Message != `command timed out: "sleep 5" timed out after 1s` {
		t.Errorf("exec timeout: %+v %v", res, err)
	}
}

// TestGRPC probes a server of the gRPC health checking protocol.
func TestGRPC(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("down", grpchealth.HealthCheckResponse_NOT_SERVING)
	grpchealth.RegisterHealthServer(srv, hs)
	go srv.Serve(lis) //nolint:errcheck // ends with Stop
	t.Cleanup(srv.Stop)
	port := lis.Addr().(*net.TCPAddr).Port
	svc := func(s string) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: int32(port), Service: &s}}, TimeoutSeconds: 1}
	}
	for _, tt := range []struct {
		service string
		ok      bool
		msg     string
	}{
		{"", true, "service healthy"},
		{"down", false, `service unhealthy (responded with "NOT_SERVING")`},
		{"unknown", false, "error: health rpc probe failed: rpc error: code = NotFound desc = unknown service"},
	} {
		res, err := Run(t.Context(), svc(tt.service), Target{PodIP: "127.0.0.1"})
		if err != nil || res.Success != tt.ok || res.Message != tt.msg {
			t.Errorf("service %q: %+v %v, want success %v %q", tt.service, res, err, tt.ok, tt.msg)
		}
	}
	lis2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis2.Addr().String()
	lis2.Close()
	_, p, _ := net.SplitHostPort(addr) // from a listener: always host:port
	n, _ := strconv.Atoi(p)
	res := GRPC(t.Context(), "127.0.0.1", "", n, time.Second)
	if res.Success || !strings.HasPrefix(res.Message, fmt.Sprintf("timeout: failed to connect service %q within 1s", addr)) {
		t.Errorf("closed port: %+v", res)
	}
}
