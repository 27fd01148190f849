// Package probe executes one liveness, readiness or startup probe of a
// container, the way the kubelet's prober does (k8s.io/kubernetes
// pkg/probe/http, tcp, exec and grpc): HTTP GET against the pod IP (2xx
// succeeds, a redirect it does not follow is a warning), a TCP connect, a
// command run in the container (exit 0 succeeds), or a call of the gRPC
// health checking protocol, each bounded by the probe's timeout and each
// failing with the kubelet's message. When and how often to probe, and what a
// result means, belong to the caller (the pod worker).
package probe

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpchealth "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/logplane/logplane/dataplane/runtimeapi"
)

// Result is the outcome of one probe.
type Result struct {
	Success bool
	// Warning is set on a success the kubelet reports as a warning (an HTTP
	// redirect it did not follow): the caller records a ProbeWarning event.
	Warning bool
	// Message says why it failed (or what the probe returned on success),
	// as the kubelet's probers word it.
	Message string
}

// Execer runs a command in a container (the runtime's Exec).
type Execer interface {
	Exec(ctx context.Context, containerID string, opts runtimeapi.ExecOptions) (int, error)
}

// Target is what a probe is run against.
type Target struct {
	PodIP       string
	ContainerID string
	// Ports are the container's ports, to resolve named probe ports.
	Ports []corev1.ContainerPort
	// Exec runs exec probes; may be nil when no probe uses exec.
	Exec Execer
}

// DefaultTimeout is used when a probe's timeoutSeconds is 0.
const DefaultTimeout = time.Second

// maxBody is how much of an HTTP response body, or of an exec probe's
// output, is kept (the kubelet's maxRespBodyLength and maxReadLength).
const maxBody = 10 * 1024

// UserAgent is the kubelet's for the Kubernetes release logplane reports
// (kube-probe/<major>.<minor>).
const UserAgent = "kube-probe/1.34"

// Timeout returns the probe's timeout.
func Timeout(p *corev1.Probe) time.Duration {
	if p.TimeoutSeconds > 0 {
		return time.Duration(p.TimeoutSeconds) * time.Second
	}
	return DefaultTimeout
}

// Run executes the probe once against t. An error means the probe could not
// be run at all (the kubelet's Unknown result: an unresolvable port, an exec
// that could not start); a probe that ran and failed is a Result with Success
// false and the kubelet's message.
func Run(ctx context.Context, p *corev1.Probe, t Target) (Result, error) {
	timeout := Timeout(p)
	switch {
	case p.HTTPGet != nil:
		req, err := NewHTTPRequest(ctx, p.HTTPGet, t.Ports, t.PodIP, "probe")
		if err != nil {
			return Result{}, err
		}
		return HTTPGet(req, timeout), nil
	case p.TCPSocket != nil:
		port, err := ResolvePort(p.TCPSocket.Port, t.Ports)
		if err != nil {
			return Result{}, err
		}
		host := p.TCPSocket.Host
		if host == "" {
			host = t.PodIP
		}
		return TCP(ctx, net.JoinHostPort(host, strconv.Itoa(port)), timeout), nil
	case p.Exec != nil:
		if t.Exec == nil {
			return Result{}, errors.New("probe: exec probe without an Execer")
		}
		return Exec(ctx, t.Exec, t.ContainerID, p.Exec.Command, timeout)
	case p.GRPC != nil:
		service := ""
		if p.GRPC.Service != nil {
			service = *p.GRPC.Service
		}
		return GRPC(ctx, t.PodIP, service, int(p.GRPC.Port), timeout), nil
	default:
		return Result{}, errors.New("probe: no handler in probe")
	}
}

// ResolvePort is the kubelet's probe.ResolveContainerPort: a number, or the
// name of one of the container's ports, or a number written as a string.
func ResolvePort(param intstr.IntOrString, ports []corev1.ContainerPort) (int, error) {
	port := -1
	switch param.Type {
	case intstr.Int:
		port = param.IntValue()
	case intstr.String:
		found := false
		for _, cp := range ports {
			if cp.Name == param.StrVal {
				port, found = int(cp.ContainerPort), true
				break
			}
		}
		if !found {
			n, err := strconv.Atoi(param.StrVal)
			if err != nil {
				return n, err
			}
			port = n
		}
	default:
		return port, fmt.Errorf("intOrString had no kind: %+v", param)
	}
	if port > 0 && port < 65536 {
		return port, nil
	}
	return port, fmt.Errorf("invalid port number: %v", port)
}

// Dialer is the kubelet's probe.ProbeDialer: SO_LINGER with a one-second
// linger, so that probes do not leave sockets in TIME-WAIT behind them.
func Dialer() *net.Dialer {
	return &net.Dialer{
		Control: func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) {
				// As the kubelet: a failure only leaves the default linger.
				_ = syscall.SetsockoptLinger(int(fd), syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1, Linger: 1})
			})
		},
	}
}

// NewHTTPRequest is the kubelet's NewRequestForHTTPGetAction: the URL from
// the action's scheme, host (the pod IP when empty), port and path, its
// headers, and User-Agent kube-<purpose>/1.34 and Accept */* unless set.
func NewHTTPRequest(ctx context.Context, a *corev1.HTTPGetAction, ports []corev1.ContainerPort, podIP, purpose string) (*http.Request, error) {
	scheme := strings.ToLower(string(a.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	host := a.Host
	if host == "" {
		host = podIP
	}
	port, err := ResolvePort(a.Port, ports)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(a.Path)
	if err != nil {
		// As the kubelet: too late to reject the path, pass it along as is.
		u = &url.URL{Path: a.Path}
	}
	u.Scheme = scheme
	u.Host = net.JoinHostPort(host, strconv.Itoa(port))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	headers := make(http.Header)
	for _, h := range a.HTTPHeaders {
		headers.Add(h.Name, h.Value)
	}
	if _, ok := headers["User-Agent"]; !ok {
		headers.Set("User-Agent", "kube-"+purpose+"/1.34")
	}
	if _, ok := headers["Accept"]; !ok {
		headers.Set("Accept", "*/*")
	} else if headers.Get("Accept") == "" {
		headers.Del("Accept")
	}
	req.Header = headers
	req.Host = headers.Get("Host")
	return req, nil
}

// httpTransport is the kubelet's probe transport: no keep-alives, no proxy,
// no compression, TLS without verification, the probe dialer.
var httpTransport = &http.Transport{
	TLSClientConfig:     &tls.Config{InsecureSkipVerify: true}, // as the kubelet: probes do not verify
	DisableKeepAlives:   true,
	Proxy:               http.ProxyURL(nil),
	DisableCompression:  true,
	DialContext:         Dialer().DialContext,
	TLSHandshakeTimeout: 10 * time.Second,
}

// RedirectChecker is the kubelet's: redirects to the same host are
// followed (up to 10), others end the request with the redirect response.
func RedirectChecker(req *http.Request, via []*http.Request) error {
	if req.URL.Hostname() != via[0].URL.Hostname() {
		return http.ErrUseLastResponse
	}
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	return nil
}

// HTTPGet is the kubelet's DoHTTPProbe: a status from 200 to 399 succeeds
// (one from 300 to 399, a redirect not followed, with a warning), anything
// else fails with "HTTP probe failed with statuscode: N", and a request that
// fails (refused, timed out) fails with its error.
func HTTPGet(req *http.Request, timeout time.Duration) Result {
	client := &http.Client{Timeout: timeout, Transport: httpTransport, CheckRedirect: RedirectChecker}
	res, err := client.Do(req)
	if err != nil {
		return Result{Message: err.Error()}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, maxBody))
	if err != nil {
		return Result{Message: ""}
	}
	body := string(b)
	if res.StatusCode >= http.StatusOK && res.StatusCode < http.StatusBadRequest {
		if res.StatusCode >= http.StatusMultipleChoices {
			return Result{Success: true, Warning: true, Message: "Probe terminated redirects, Response body: " + body}
		}
		return Result{Success: true, Message: body}
	}
	return Result{Message: fmt.Sprintf("HTTP probe failed with statuscode: %d", res.StatusCode)}
}

// TCP is the kubelet's DoTCPProbe: a connection that opens within timeout
// succeeds; a failure's message is the dialer's error as it is ("dial tcp
// 10.244.0.5:8080: connect: connection refused"). The timeout counts from the
// dial, as net.DialTimeout's does.
func TCP(ctx context.Context, addr string, timeout time.Duration) Result {
	d := Dialer()
	d.Timeout = timeout
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return Result{Message: err.Error()}
	}
	c.Close() // the probe only checks that it opens
	return Result{Success: true}
}

// Exec is the kubelet's exec prober: the command's combined output (at most
// 10 KiB) is the message, exit code 0 succeeds, another fails; a command
// still running after timeout (counted from its start, as containerd's
// ExecSync) is killed and fails with cri-client's "command timed out"
// message. An exec that could not run at all is an error (the kubelet's
// Unknown, which it retries).
func Exec(ctx context.Context, e Execer, containerID string, cmd []string, timeout time.Duration) (Result, error) {
	var out bytes.Buffer
	lw := &limited{w: &out, n: maxBody}
	code, err := e.Exec(ctx, containerID, runtimeapi.ExecOptions{Cmd: cmd, Stdout: lw, Stderr: lw, Timeout: timeout})
	if err != nil {
		if errors.Is(err, runtimeapi.ErrExecTimeout) {
			return Result{Message: fmt.Sprintf("command timed out: %q timed out after %s", strings.Join(cmd, " "), timeout)}, nil
		}
		return Result{}, err
	}
	if code != 0 {
		return Result{Message: out.String()}, nil
	}
	return Result{Success: true, Message: out.String()}, nil
}

// GRPC is the kubelet's gRPC prober: a call of grpc.health.v1.Health/Check
// for service on host:port without TLS, bounded by timeout; SERVING
// succeeds, anything else fails with the kubelet's message.
func GRPC(ctx context.Context, host, service string, port int, timeout time.Duration) Result {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	// DialContext and WithBlock (deprecated in grpc-go), as the kubelet: the connection must be up within the timeout.
	conn, err := grpc.DialContext(ctx, addr,
		grpc.WithUserAgent(UserAgent),
		grpc.WithBlock(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			return Dialer().DialContext(ctx, "tcp", a)
		}),
	)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return Result{Message: fmt.Sprintf("timeout: failed to connect service %q within %v: %+v", addr, timeout, err)}
		}
		return Result{Message: fmt.Sprintf("error: failed to connect service at %q: %+v", addr, err)}
	}
	defer conn.Close() // a close error changes nothing for the probe
	resp, err := grpchealth.NewHealthClient(conn).Check(metadata.NewOutgoingContext(ctx, make(metadata.MD)), &grpchealth.HealthCheckRequest{Service: service})
	if err != nil {
		if stat, ok := status.FromError(err); ok {
			switch stat.Code() {
			case codes.Unimplemented:
				return Result{Message: "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): " + stat.Message()}
			case codes.DeadlineExceeded:
				return Result{Message: fmt.Sprintf("timeout: health rpc did not complete within %v", timeout)}
			}
		}
		return Result{Message: fmt.Sprintf("error: health rpc probe failed: %+v", err)}
	}
	if resp.GetStatus() != grpchealth.HealthCheckResponse_SERVING {
		return Result{Message: fmt.Sprintf("service unhealthy (responded with %q)", resp.GetStatus().String())}
	}
	return Result{Success: true, Message: "service healthy"}
}

type limited struct {
	w io.Writer
	n int
}

func (l *limited) Write(p []byte) (int, error) {
	n := len(p)
	if l.n <= 0 {
		return n, nil
	}
	if len(p) > l.n {
		p = p[:l.n]
	}
	l.n -= len(p)
	if _, err := l.w.Write(p); err != nil {
		return 0, err
	}
	return n, nil
}
