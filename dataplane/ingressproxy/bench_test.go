package ingressproxy_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/logplane/logplane/dataplane/ingressproxy"
)

// The benchmark runs the proxies and the backend as processes of their
// own (this test binary in another role), so that the load generator,
// the proxy and the backend do not share a Go runtime, as nginx does not.
const roleEnv = "LOGPLANE_INGRESSBENCH_ROLE"

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "":
		os.Exit(m.Run())
	case "backend":
		runRole(benchBackend)
	case "proxy":
		runRole(benchProxy)
	default:
		fmt.Fprintf(os.Stderr, "unknown %s=%q\n", roleEnv, os.Getenv(roleEnv))
		os.Exit(2)
	}
}

// runRole serves on 127.0.0.1 (a free port), prints the address on
// stdout, and exits when stdin closes (the benchmark ended or died).
func runRole(serve func(context.Context, net.Listener) error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		io.Copy(io.Discard, os.Stdin) //nolint:errcheck // EOF or an error: either way the parent is gone
		cancel()
	}()
	fmt.Println(ln.Addr().String())
	if err := serve(ctx, ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// benchBody is the small response of the benchmark's backend.
var benchBody = []byte("Hello, world\n")

func benchBackend(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"text/plain"}
		h["Content-Length"] = []string{strconv.Itoa(len(benchBody))}
		w.Write(benchBody) //nolint:errcheck // the client's problem
	})}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func benchProxy(ctx context.Context, ln net.Listener) error {
	backend := os.Getenv("LOGPLANE_INGRESSBENCH_BACKEND")
	host, portStr, err := net.SplitHostPort(backend)
	if err != nil {
		return err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return err
	}
	p, err := ingressproxy.New(ingressproxy.Config{ErrorLog: log.New(os.Stderr, "", log.LstdFlags)})
	if err != nil {
		return err
	}
	p.UpdateIngressClass(&networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "logplane"}, Spec: networkingv1.IngressClassSpec{Controller: ingressproxy.DefaultController}})
	p.UpdateService(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: "hello"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}})
	if err := p.UpdateEndpointSlice(&discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "bench", Name: "hello-1", Labels: map[string]string{discoveryv1.LabelServiceName: "hello"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{host}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(port))}},
	}); err != nil {
		return err
	}
	p.UpdateIngress(&networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: "hello"},
		Spec: networkingv1.IngressSpec{IngressClassName: ptr.To("logplane"), Rules: []networkingv1.IngressRule{{
			Host: "bench.example",
			IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{
				Path: "/", PathType: ptr.To(networkingv1.PathTypePrefix),
				Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "hello", Port: networkingv1.ServiceBackendPort{Name: "http"}}},
			}}}},
		}}},
	})
	defer p.Close()
	// LOGPLANE_INGRESSBENCH_CPUPROFILE=FILE profiles the proxy process.
	if f := os.Getenv("LOGPLANE_INGRESSBENCH_CPUPROFILE"); f != "" {
		out, err := os.Create(f)
		if err != nil {
			return err
		}
		defer out.Close()
		if err := pprof.StartCPUProfile(out); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	return p.Serve(ctx, ln)
}

// child is a process the benchmark started; stop ends it by its PID.
type child struct {
	cmd  *exec.Cmd
	addr string
	stop func()
}

// startRole starts this test binary in a role and reads the address it
// serves on.
func startRole(b *testing.B, role string, env ...string) *child {
	b.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(append(os.Environ(), roleEnv+"="+role), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	c := &child{cmd: cmd, stop: func() {
		stdin.Close()
		cmd.Wait() //nolint:errcheck // it exits 0 on stdin's EOF; anything else shows on stderr
	}}
	b.Cleanup(c.stop)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("%s: %v", role, err)
	}
	c.addr = strings.TrimSpace(line)
	return c
}

// nginxConf is nginx set up as the equivalent reverse proxy: the same
// listener kind, the same backend through a keep-alive pool, the same
// headers, no buffering of responses and no access log (ingress-nginx's
// defaults for proxy-buffering; logplane logs no request).
const nginxConf = `worker_processes auto;
daemon off;
pid {{dir}}/nginx.pid;
error_log {{dir}}/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	keepalive_timeout 75s;
	keepalive_requests 1000000;
	client_body_temp_path {{dir}}/client_body;
	proxy_temp_path {{dir}}/proxy;
	fastcgi_temp_path {{dir}}/fastcgi;
	uwsgi_temp_path {{dir}}/uwsgi;
	scgi_temp_path {{dir}}/scgi;
	upstream hello {
		server {{backend}};
		keepalive 128;
		keepalive_requests 1000000;
		keepalive_timeout 60s;
	}
	server {
		listen {{listen}} default_server;
		return 404;
	}
	server {
		listen {{listen}};
		server_name bench.example;
		location / {
			proxy_pass http://hello;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header Host $http_host;
			proxy_set_header X-Forwarded-For $remote_addr;
			proxy_set_header X-Real-IP $remote_addr;
			proxy_set_header X-Forwarded-Host $http_host;
			proxy_set_header X-Forwarded-Proto $scheme;
			proxy_set_header X-Forwarded-Port $server_port;
			proxy_buffering off;
		}
	}
}
`

// startNginx starts Debian's nginx with nginxConf on a free loopback port.
func startNginx(b *testing.B, backend string) *child {
	b.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		b.Skip("nginx is not installed (apt-get install -y nginx-light): proxy=nginx skipped")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := b.TempDir()
	conf := strings.NewReplacer("{{dir}}", dir, "{{backend}}", backend, "{{listen}}", addr).Replace(nginxConf)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", filepath.Join(dir, "nginx.conf"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	c := &child{cmd: cmd, addr: addr, stop: func() {
		cmd.Process.Signal(syscall.SIGQUIT) //nolint:errcheck // already gone: Wait says
		cmd.Wait()                          //nolint:errcheck
	}}
	b.Cleanup(c.stop)
	for deadline := time.Now().Add(10 * time.Second); ; {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			errLog, _ := os.ReadFile(filepath.Join(dir, "error.log")) //nolint:errcheck // best effort, for the message
			b.Fatalf("nginx did not start: %v\n%s%s", err, out.String(), errLog)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return c
}

// BenchmarkIngress compares logplane's proxy with nginx as the same
// reverse proxy to the same backend: b.N requests for a small response
// (13 bytes) over 64 keep-alive connections, from the same load
// generator (a lean HTTP/1.1 client in this process). Metrics: req/s,
// p99-ms (latency of a request as the client sees it), proxy-cpu-us/req
// and proxy-sys-us/req (CPU of the proxy's processes per request, all and
// in the kernel), load1 (the machine's load average at the start).
//
//	go test -run '^$' -bench BenchmarkIngress -benchtime 100000x -count 6 ./dataplane/ingressproxy/
func BenchmarkIngress(b *testing.B) {
	be := startRole(b, "backend")
	proxies := []struct {
		name  string
		start func(*testing.B) *child
	}{
		{"logplane", func(b *testing.B) *child {
			return startRole(b, "proxy", "LOGPLANE_INGRESSBENCH_BACKEND="+be.addr)
		}},
		{"nginx", func(b *testing.B) *child { return startNginx(b, be.addr) }},
	}
	for _, px := range proxies {
		b.Run("proxy="+px.name, func(b *testing.B) {
			load1 := loadAverage(b)
			c := px.start(b)
			defer c.stop()
			conns, err := dialAll(c.addr, 64)
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				for _, cn := range conns {
					cn.c.Close()
				}
			}()
			if _, err := runLoad(conns, 64*50); err != nil { // warm up both pools
				b.Fatal(err)
			}
			cpu0 := treeCPU(c.cmd.Process.Pid)
			b.ResetTimer()
			res, err := runLoad(conns, b.N)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			cpu := treeCPU(c.cmd.Process.Pid).sub(cpu0)
			slices.Sort(res.lat)
			p99 := res.lat[(len(res.lat)*99)/100]
			b.ReportMetric(float64(b.N)/res.elapsed.Seconds(), "req/s")
			b.ReportMetric(float64(p99)/float64(time.Millisecond), "p99-ms")
			b.ReportMetric(float64((cpu.user+cpu.sys).Microseconds())/float64(b.N), "proxy-cpu-us/req")
			b.ReportMetric(float64(cpu.sys.Microseconds())/float64(b.N), "proxy-sys-us/req")
			b.ReportMetric(load1, "load1")
		})
	}
}

// benchConn is one keep-alive client connection.
type benchConn struct {
	c net.Conn
	r *bufio.Reader
}

var benchRequest = []byte("GET / HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: logplane-bench\r\nAccept: */*\r\n\r\n")

func dialAll(addr string, n int) ([]*benchConn, error) {
	var out []*benchConn
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return nil, err
		}
		out = append(out, &benchConn{c: c, r: bufio.NewReaderSize(c, 4096)})
	}
	return out, nil
}

type loadResult struct {
	elapsed time.Duration
	lat     []time.Duration
}

// runLoad sends total requests spread over conns, each connection one
// request at a time, and measures each.
func runLoad(conns []*benchConn, total int) (loadResult, error) {
	lats := make([][]time.Duration, len(conns))
	errs := make([]error, len(conns))
	var wg sync.WaitGroup
	start := time.Now()
	for i, c := range conns {
		n := total / len(conns)
		if i < total%len(conns) {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, n)
			for range n {
				t0 := time.Now()
				if err := c.roundTrip(); err != nil {
					errs[i] = err
					return
				}
				lat = append(lat, time.Since(t0))
			}
			lats[i] = lat
		}()
	}
	wg.Wait()
	res := loadResult{elapsed: time.Since(start)}
	if err := errors.Join(errs...); err != nil {
		return res, err
	}
	for _, l := range lats {
		res.lat = append(res.lat, l...)
	}
	return res, nil
}

// roundTrip writes the request and reads a 200 response with a
// Content-Length body.
func (c *benchConn) roundTrip() error {
	if _, err := c.c.Write(benchRequest); err != nil {
		return err
	}
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
		return fmt.Errorf("status %q", line)
	}
	length := -1
	for {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			if length, err = strconv.Atoi(string(bytes.TrimSpace(v))); err != nil {
				return err
			}
		}
	}
	if length < 0 {
		return errors.New("no Content-Length")
	}
	_, err = c.r.Discard(length)
	return err
}

// loadAverage is the machine's one-minute load average.
func loadAverage(b *testing.B) float64 {
	b.Helper()
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(data))
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		b.Fatal(err)
	}
	return v
}

// cpuTimes are a process tree's user and system CPU.
type cpuTimes struct{ user, sys time.Duration }

func (c cpuTimes) sub(o cpuTimes) cpuTimes { return cpuTimes{c.user - o.user, c.sys - o.sys} }

// treeCPU is the CPU used so far by process pid and its children
// (nginx's workers).
func treeCPU(pid int) cpuTimes {
	total := procCPU(pid)
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return total
	}
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil || child == pid {
			continue
		}
		if ppid(child) == pid {
			c := procCPU(child)
			total.user += c.user
			total.sys += c.sys
		}
	}
	return total
}

// statFields are the fields of /proc/PID/stat after the command name.
func statFields(pid int) []string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(data[i+1:]))
}

func ppid(pid int) int {
	f := statFields(pid)
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1]) //nolint:errcheck // 0 for what cannot be read
	return n
}

// procCPU is the utime and stime of pid (clock ticks of 10 ms).
func procCPU(pid int) cpuTimes {
	f := statFields(pid)
	if len(f) < 13 {
		return cpuTimes{}
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64) //nolint:errcheck // 0 for what cannot be read
	st, _ := strconv.ParseInt(f[12], 10, 64) //nolint:errcheck
	return cpuTimes{time.Duration(ut) * 10 * time.Millisecond, time.Duration(st) * 10 * time.Millisecond}
}
