package nodeagent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"

	"github.com/logplane/logplane/dataplane/runtimeapi"
	"github.com/logplane/logplane/registry"
)

// Streaming timeouts, as the kubelet's defaults.
const (
	streamIdleTimeout     = 4 * time.Hour
	streamCreationTimeout = remotecommand.DefaultStreamCreationTimeout
)

// APIServerGroup is the certificate group (Organization) a client of the
// streaming endpoint must have: the API server's client certificate for
// nodes carries it.
const APIServerGroup = "system:masters"

// remoteCommandProtocols are the SPDY remote command protocols served
// (WebSocket v5 clients are translated to SPDY by the API server).
var remoteCommandProtocols = []string{
	remotecommand.StreamProtocolV4Name, remotecommand.StreamProtocolV3Name,
	remotecommand.StreamProtocolV2Name, remotecommand.StreamProtocolV1Name,
}

// Server is a node's streaming endpoint, like the kubelet's: container logs,
// exec, attach and port-forward of the pods of the agents it serves (one agent, or a
// Fleet's). It serves HTTPS only to clients with a certificate of the
// cluster CA in group APIServerGroup (the API server).
//
// Paths: GET /containerLogs/{namespace}/{pod}/{container} (follow, previous,
// tailLines, sinceSeconds, sinceTime, timestamps, limitBytes);
// /exec/{namespace}/{pod}/{container}?command=...&input=1&output=1&error=1&tty=1;
// /attach/{namespace}/{pod}/{container}?input=1&output=1&error=1&tty=1;
// /portForward/{namespace}/{pod}; POST /images/{node} (an image archive to import into the
// node's runtime; answers ImagesLoaded as JSON); GET /healthz.
type Server struct {
	log *slog.Logger

	mu     sync.RWMutex
	agents []*Agent
}

// NewServer returns a Server for agents.
func NewServer(logger *slog.Logger, agents ...*Agent) *Server {
	if logger == nil {
		logger = slog.Default()
	}
	return &Server{log: logger, agents: agents}
}

// ServerTLS makes the TLS configuration of a streaming endpoint: it serves
// with cert and key and requires client certificates signed by the CA in caPEM.
func ServerTLS(caPEM, certPEM, keyPEM []byte) (*tls.Config, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("nodeagent: serving certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("nodeagent: no CA certificate in the CA PEM")
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"}, // upgrades (SPDY, WebSocket) need HTTP/1.1
	}, nil
}

// Serve serves ln with TLS until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener, tlsConfig *tls.Config) error {
	if tlsConfig == nil || tlsConfig.ClientAuth != tls.RequireAndVerifyClientCert {
		return errors.New("nodeagent: the streaming endpoint needs TLS requiring client certificates")
	}
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 30 * time.Second,
		TLSConfig:         tlsConfig,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(tls.NewListener(ln, tlsConfig)) }()
	select {
	case err := <-errc:
		return fmt.Errorf("nodeagent: streaming endpoint: %w", err)
	case <-ctx.Done():
	}
	// Streams (exec, follow) are long: close rather than wait for them.
	err := hs.Close()
	<-errc
	if err != nil {
		return fmt.Errorf("nodeagent: streaming endpoint: %w", err)
	}
	return nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !authorized(r) {
		writeStatus(w, apierrors.NewForbidden(nodesResource, "", errors.New("a client certificate of group "+APIServerGroup+" is required")))
		return
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case len(parts) == 1 && parts[0] == "healthz":
		_, _ = io.WriteString(w, "ok") // the client may be gone; nothing to do
	case len(parts) == 4 && parts[0] == "containerLogs" && r.Method == http.MethodGet:
		s.serveLogs(w, r, parts[1], parts[2], parts[3])
	case len(parts) == 4 && parts[0] == "exec":
		s.serveExec(w, r, parts[1], parts[2], parts[3])
	case len(parts) == 4 && parts[0] == "attach":
		s.serveAttach(w, r, parts[1], parts[2], parts[3])
	case len(parts) == 3 && parts[0] == "portForward":
		s.servePortForward(w, r, parts[1], parts[2])
	case len(parts) == 2 && parts[0] == "images" && r.Method == http.MethodPost:
		s.serveImageLoad(w, r, parts[1])
	default:
		writeStatus(w, apierrors.NewNotFound(nodesResource, "proxy"))
	}
}

func authorized(r *http.Request) bool {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return false
	}
	return slices.Contains(r.TLS.VerifiedChains[0][0].Subject.Organization, APIServerGroup)
}

// find returns the agent that runs the pod, and the pod's UID.
func (s *Server) find(namespace, name string) (*Agent, types.UID, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, a := range s.agents {
		if uid, ok := a.PodUID(namespace, name); ok {
			return a, uid, nil
		}
	}
	return nil, "", apierrors.NewNotFound(podsResource, name)
}

// agent returns the agent of the node named node, nil if this endpoint serves no such node.
func (s *Server) agent(node string) *Agent {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, a := range s.agents {
		if a.NodeName() == node {
			return a
		}
	}
	return nil
}

func (s *Server) container(ctx context.Context, namespace, pod, container string, previous bool) (*Agent, string, error) {
	a, uid, err := s.find(namespace, pod)
	if err != nil {
		return nil, "", err
	}
	id, err := a.Pods().ContainerID(ctx, uid, container, previous)
	switch {
	case errors.Is(err, runtimeapi.ErrNotFound) && previous:
		return nil, "", apierrors.NewBadRequest(fmt.Sprintf("previous terminated container %q in pod %q not found", container, pod))
	case errors.Is(err, runtimeapi.ErrNotFound):
		return nil, "", apierrors.NewBadRequest(fmt.Sprintf("container %q in pod %q is not available", container, pod))
	case err != nil:
		return nil, "", apierrors.NewInternalError(err)
	}
	return a, id, nil
}

func (s *Server) serveLogs(w http.ResponseWriter, r *http.Request, namespace, pod, container string) {
	q := r.URL.Query()
	opts := runtimeapi.LogOptions{
		Follow:     q.Get("follow") == "true",
		Timestamps: q.Get("timestamps") == "true",
		TailLines:  -1,
	}
	num := func(name string) (int64, bool) {
		v := q.Get(name)
		if v == "" {
			return 0, false
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			writeStatus(w, apierrors.NewBadRequest(fmt.Sprintf("%s: %q is not a non-negative integer", name, v)))
			return 0, true
		}
		return n, false
	}
	var bad bool
	if opts.TailLines, bad = num("tailLines"); bad {
		return
	} else if q.Get("tailLines") == "" {
		opts.TailLines = -1
	}
	if opts.LimitBytes, bad = num("limitBytes"); bad {
		return
	}
	secs, bad := num("sinceSeconds")
	if bad {
		return
	}
	if secs > 0 {
		opts.Since = time.Now().Add(-time.Duration(secs) * time.Second)
	}
	if v := q.Get("sinceTime"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			writeStatus(w, apierrors.NewBadRequest(fmt.Sprintf("sinceTime: %v", err)))
			return
		}
		opts.Since = t
	}
	a, id, err := s.container(r.Context(), namespace, pod, container, q.Get("previous") == "true")
	if err != nil {
		writeStatus(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Transfer-Encoding", "chunked")
	w.WriteHeader(http.StatusOK)
	fw := &flushWriter{w: w}
	if f, ok := w.(http.Flusher); ok {
		fw.f = f
		f.Flush()
	}
	if err := a.Runtime().Logs(r.Context(), id, opts, fw); err != nil && r.Context().Err() == nil {
		s.log.Debug("nodeagent: container logs", "pod", namespace+"/"+pod, "container", container, "err", err)
	}
}

// flushWriter flushes every write, so that followed logs arrive as written.
type flushWriter struct {
	w io.Writer
	f http.Flusher
}

func (fw *flushWriter) Write(p []byte) (int, error) {
	n, err := fw.w.Write(p)
	if fw.f != nil {
		fw.f.Flush()
	}
	return n, err
}

func (s *Server) serveExec(w http.ResponseWriter, r *http.Request, namespace, pod, container string) {
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		writeStatus(w, apierrors.NewBadRequest(err.Error()))
		return
	}
	a, uid, err := s.find(namespace, pod)
	if err != nil {
		writeStatus(w, err)
		return
	}
	cmd := r.URL.Query()["command"]
	if len(cmd) == 0 {
		writeStatus(w, apierrors.NewBadRequest("you must specify a command"))
		return
	}
	remotecommand.ServeExec(w, r, executor{a}, pod, string(uid), container, cmd, opts,
		streamIdleTimeout, streamCreationTimeout, remoteCommandProtocols)
}

// attachRuntime is a runtime that can attach to containers (dataplane/containerd can; the
// simulated runtime cannot).
type attachRuntime interface {
	Attach(ctx context.Context, id string, opts runtimeapi.AttachOptions) error
}

func (s *Server) serveAttach(w http.ResponseWriter, r *http.Request, namespace, pod, container string) {
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		writeStatus(w, apierrors.NewBadRequest(err.Error()))
		return
	}
	a, uid, err := s.find(namespace, pod)
	if err != nil {
		writeStatus(w, err)
		return
	}
	if _, ok := a.Runtime().(attachRuntime); !ok {
		writeStatus(w, apierrors.NewBadRequest("the runtime of node "+a.NodeName()+" cannot attach to containers"))
		return
	}
	remotecommand.ServeAttach(w, r, executor{a}, pod, string(uid), container, opts,
		streamIdleTimeout, streamCreationTimeout, remoteCommandProtocols)
}

// AttachContainer attaches to a container's main process for remotecommand.ServeAttach.
func (e executor) AttachContainer(ctx context.Context, _, uid, container string, in io.Reader, out, errw io.WriteCloser,
	tty bool, resize <-chan remotecommand.TerminalSize) error {
	rt, ok := e.a.Runtime().(attachRuntime)
	if !ok {
		return fmt.Errorf("nodeagent: the runtime cannot attach")
	}
	id, err := e.a.Pods().ContainerID(ctx, types.UID(uid), container, false)
	if err != nil {
		return fmt.Errorf("container %q: %w", container, err)
	}
	opts := runtimeapi.AttachOptions{TTY: tty, Resize: terminalSizes(ctx, resize)}
	if in != nil {
		opts.Stdin = in
	}
	if out != nil {
		opts.Stdout = out
	}
	if errw != nil {
		opts.Stderr = errw
	}
	return rt.Attach(ctx, id, opts)
}

// terminalSizes converts the streaming server's resize events for the runtime.
func terminalSizes(ctx context.Context, resize <-chan remotecommand.TerminalSize) <-chan runtimeapi.TerminalSize {
	if resize == nil {
		return nil
	}
	sizes := make(chan runtimeapi.TerminalSize)
	go func() {
		defer close(sizes)
		for {
			select {
			case sz, ok := <-resize:
				if !ok {
					return
				}
				select {
				case sizes <- runtimeapi.TerminalSize{Width: sz.Width, Height: sz.Height}:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return sizes
}

// executor runs commands in containers for remotecommand.ServeExec.
type executor struct{ a *Agent }

func (e executor) ExecInContainer(ctx context.Context, _, uid, container string, cmd []string, in io.Reader, out, errw io.WriteCloser,
	tty bool, resize <-chan remotecommand.TerminalSize, _ time.Duration) error {
	id, err := e.a.Pods().ContainerID(ctx, types.UID(uid), container, false)
	if err != nil {
		return fmt.Errorf("container %q: %w", container, err)
	}
	opts := runtimeapi.ExecOptions{Cmd: cmd, TTY: tty}
	// The streams are nil when not asked for; keep the interfaces nil then.
	if in != nil {
		opts.Stdin = in
	}
	if out != nil {
		opts.Stdout = out
	}
	if errw != nil {
		opts.Stderr = errw
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	opts.Resize = terminalSizes(ctx, resize)
	code, err := e.a.Runtime().Exec(ctx, id, opts)
	if err != nil {
		return err
	}
	if code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: code}
	}
	return nil
}

func (s *Server) servePortForward(w http.ResponseWriter, r *http.Request, namespace, pod string) {
	opts, err := portforward.NewV4Options(r)
	if err != nil {
		writeStatus(w, apierrors.NewBadRequest(err.Error()))
		return
	}
	a, uid, err := s.find(namespace, pod)
	if err != nil {
		writeStatus(w, err)
		return
	}
	portforward.ServePortForward(w, r, forwarder{a}, pod, string(uid), opts,
		streamIdleTimeout, streamCreationTimeout, portforward.SupportedProtocols)
}

// forwarder copies streams to ports of pods for portforward.ServePortForward.
type forwarder struct{ a *Agent }

func (f forwarder) PortForward(ctx context.Context, _, uid string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	sb, err := f.a.Pods().SandboxID(ctx, types.UID(uid))
	if err != nil {
		return err
	}
	conn, err := f.a.Runtime().PortForward(ctx, sb, port)
	if err != nil {
		return fmt.Errorf("nodeagent: port-forward to port %d: %w", port, err)
	}
	defer conn.Close()
	go func() {
		if _, err := io.Copy(conn, stream); err != nil {
			conn.Close() // the client is gone: end the other direction too
			return
		}
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite() // the pod's answer ends the copy below either way
		}
	}()
	if _, err := io.Copy(stream, conn); err != nil && !errors.Is(err, net.ErrClosed) && ctx.Err() == nil {
		return fmt.Errorf("nodeagent: port-forward to port %d: %w", port, err)
	}
	return nil
}

// imageImporter is a runtime that keeps images and imports archives of them (dataplane/containerd
// does; the simulated runtime keeps none: its containers run whatever image they name).
type imageImporter interface {
	ImportArchive(ctx context.Context, archive io.Reader) ([]string, error)
}

// serveImageLoad imports the image archive of the request's body into the node's runtime, as
// `kind load image-archive` does on a kind node: for clusters that reach no registry.
func (s *Server) serveImageLoad(w http.ResponseWriter, r *http.Request, node string) {
	a := s.agent(node)
	if a == nil {
		writeStatus(w, apierrors.NewNotFound(nodesResource, node))
		return
	}
	imp, ok := a.Runtime().(imageImporter)
	if !ok {
		writeStatus(w, apierrors.NewBadRequest("cannot load images: this node's runtime keeps none (a simulated node runs any image its pods name)"))
		return
	}
	names, err := imp.ImportArchive(r.Context(), r.Body)
	switch {
	case errors.Is(err, runtimeapi.ErrInvalidImageArchive):
		writeStatus(w, apierrors.NewBadRequest(err.Error()))
		return
	case err != nil:
		writeStatus(w, apierrors.NewInternalError(fmt.Errorf("loading images: %w", err)))
		return
	}
	s.log.Info("nodeagent: loaded images", "node", node, "images", names)
	w.Header().Set("Content-Type", "application/json")
	// The client may be gone; the images are loaded either way.
	_ = json.NewEncoder(w).Encode(ImagesLoaded{Node: node, Images: names})
}

// ImagesLoaded is the answer of POST /images/{node}: the names of the images the archive held,
// now on the node.
type ImagesLoaded struct {
	Node   string   `json:"node"`
	Images []string `json:"images"`
}

var (
	podsResource  = schema.GroupResource{Resource: "pods"}
	nodesResource = schema.GroupResource{Resource: "nodes"}
)

// writeStatus answers with err as a Kubernetes Status, which the API server passes on.
func writeStatus(w http.ResponseWriter, err error) {
	st := registry.StatusOf(err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(st.Code))
	_ = json.NewEncoder(w).Encode(st) // the client may be gone; nothing to do
}
