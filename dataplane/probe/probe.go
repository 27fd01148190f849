// Package probe executes one liveness, readiness or startup probe of a
// container, the way the kubelet's prober does: HTTP GET against the pod IP
// (2xx and 3xx succeed), a TCP connect, or a command run in the container
// (exit 0 succeeds), each bounded by the probe's timeout. When and how often
// to probe, and what a result means, belong to the caller (the pod worker).
package probe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/logplane/logplane/dataplane/runtimeapi"
)

// Result is the outcome of one probe.
type Result struct {
	Success bool
	// Message says why it failed (or what an exec probe printed).
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

// maxBody is how much of an HTTP response body is kept for the message.
const maxBody = 10 * 1024

// Timeout returns the probe's timeout.
func Timeout(p *corev1.Probe) time.Duration {
	if p.TimeoutSeconds > 0 {
		return time.Duration(p.TimeoutSeconds) * time.Second
	}
	return DefaultTimeout
}

// Run executes the probe once against t. An error means the probe could not
// be run at all (an unsupported or malformed probe); a probe that ran and
// failed is a Result with Success false.
func Run(ctx context.Context, p *corev1.Probe, t Target) (Result, error) {
	timeout := Timeout(p)
	switch {
	case p.HTTPGet != nil:
		port, err := resolvePort(p.HTTPGet.Port, t.Ports)
		if err != nil {
			return Result{}, err
		}
		host := p.HTTPGet.Host
		if host == "" {
			host = t.PodIP
		}
		scheme := strings.ToLower(string(p.HTTPGet.Scheme))
		if scheme == "" {
			scheme = "http"
		}
		path := p.HTTPGet.Path
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		u := &url.URL{Scheme: scheme, Host: net.JoinHostPort(host, strconv.Itoa(port))}
		u, err = u.Parse(path)
		if err != nil {
			return Result{}, fmt.Errorf("probe: http path %q: %w", p.HTTPGet.Path, err)
		}
		hdr := http.Header{}
		for _, h := range p.HTTPGet.HTTPHeaders {
			hdr.Add(h.Name, h.Value)
		}
		return HTTPGet(ctx, u.String(), hdr, timeout), nil
	case p.TCPSocket != nil:
		port, err := resolvePort(p.TCPSocket.Port, t.Ports)
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
		return Exec(ctx, t.Exec, t.ContainerID, p.Exec.Command, timeout), nil
	case p.GRPC != nil:
		return Result{}, errors.New("probe: gRPC probes are not supported")
	default:
		return Result{}, errors.New("probe: no handler in probe")
	}
}

func resolvePort(p intstr.IntOrString, ports []corev1.ContainerPort) (int, error) {
	if p.Type == intstr.Int {
		if p.IntVal <= 0 || p.IntVal > 65535 {
			return 0, fmt.Errorf("probe: invalid port %d", p.IntVal)
		}
		return int(p.IntVal), nil
	}
	for _, cp := range ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("probe: no container port named %q", p.StrVal)
}

// HTTPGet probes url: a status from 200 to 399 succeeds.
func HTTPGet(ctx context.Context, url string, hdr http.Header, timeout time.Duration) Result {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Result{Message: err.Error()}
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "kube-probe/logplane")
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "*/*")
	}
	client := &http.Client{
		Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
		CheckRedirect: func(r *http.Request, via []*http.Request) error {
			if len(via) >= 10 || r.URL.Host != via[0].URL.Host {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
	resp, err := client.Do(req)
	if err != nil {
		return Result{Message: fmt.Sprintf("Get %q: %v", url, unwrapURLError(err))}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return Result{Message: fmt.Sprintf("Get %q: read body: %v", url, err)}
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		return Result{Success: true, Message: string(body)}
	}
	return Result{Message: fmt.Sprintf("HTTP probe failed with statuscode: %d", resp.StatusCode)}
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// TCP probes addr: a connection that opens succeeds.
func TCP(ctx context.Context, addr string, timeout time.Duration) Result {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return Result{Message: fmt.Sprintf("dial tcp %s: %v", addr, err)}
	}
	c.Close() // the probe only checks that it opens
	return Result{Success: true}
}

// Exec runs cmd in the container: exit code 0 succeeds.
func Exec(ctx context.Context, e Execer, containerID string, cmd []string, timeout time.Duration) Result {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var out bytes.Buffer
	lw := &limited{w: &out, n: maxBody}
	code, err := e.Exec(ctx, containerID, runtimeapi.ExecOptions{Cmd: cmd, Stdout: lw, Stderr: lw})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return Result{Message: fmt.Sprintf("command %q timed out", strings.Join(cmd, " "))}
		}
		return Result{Message: fmt.Sprintf("exec %q: %v", strings.Join(cmd, " "), err)}
	}
	if code != 0 {
		return Result{Message: fmt.Sprintf("command %q exited with %d: %s", strings.Join(cmd, " "), code, out.String())}
	}
	return Result{Success: true, Message: out.String()}
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
