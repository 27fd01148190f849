package probe

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/logplane/logplane/dataplane/runtimeapi"
)

type fakeExec struct {
	code  int
	delay time.Duration
}

func (f fakeExec) Exec(ctx context.Context, id string, o runtimeapi.ExecOptions) (int, error) {
	select {
	case <-time.After(f.delay):
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
