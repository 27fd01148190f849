package podworker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"

	"github.com/logplane/logplane/dataplane/crilog"
	"github.com/logplane/logplane/dataplane/runtimeapi"
)

// The kubelet's bounds on a termination message (kubecontainer's
// MaxContainerTerminationMessageLength, ...LogLength and ...LogLines).
const (
	maxTerminationMessageLength    = 4 * 1024
	maxTerminationMessageLogLength = 2 * 1024
	maxTerminationMessageLogLines  = 80
)

// labelTerminationMessage keeps, on each container instance, the host file
// mounted at its terminationMessagePath (the kubelet keeps it in the
// container's mounts and annotations).
const labelTerminationMessage = runtimeapi.LabelPrefix + "termination-message"

// terminationMessageMount creates the file that receives the container's
// termination message, as the kubelet's makeMounts does: a new, empty file
// (mode 0666) of its own for each instance under
// <VolumeDir>/<pod UID>/containers/<name>/, mounted at the container's
// terminationMessagePath. It returns no mount when the path is empty.
func (w *worker) terminationMessageMount(pod *corev1.Pod, spec *corev1.Container) (*runtimeapi.Mount, error) {
	if spec.TerminationMessagePath == "" {
		return nil, nil
	}
	dir := filepath.Join(w.m.cfg.VolumeDir, string(pod.UID), "containers", spec.Name)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("error on creating termination-log file: %w", err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b) // crypto/rand.Read never returns an error
	p := filepath.Join(dir, hex.EncodeToString(b))
	f, err := os.Create(p)
	if err != nil {
		return nil, fmt.Errorf("error on creating termination-log file %q: %w", p, err)
	}
	f.Close() // empty: only created
	// Chmod, as the kubelet: the mode must not depend on the umask.
	if err := os.Chmod(p, 0o666); err != nil {
		return nil, fmt.Errorf("unable to set termination-log file permissions %q: %w", p, err)
	}
	return &runtimeapi.Mount{HostPath: p, ContainerPath: spec.TerminationMessagePath}, nil
}

// withTerminationMessage adds the termination message to the status of an
// exited instance, as the kubelet's convertToKubeContainerStatus: what the
// container wrote to its terminationMessagePath (its last 4 KiB), or, with
// the FallbackToLogsOnError policy and a non-zero exit code, when it wrote
// nothing there, the end of its log (the last 80 lines, at most their last
// 2 KiB). It follows the runtime's own message after ": ".
func withTerminationMessage(ctx context.Context, spec *corev1.Container, st *runtimeapi.ContainerStatus) *runtimeapi.ContainerStatus {
	if st == nil || st.State != runtimeapi.StateExited {
		return st
	}
	fallback := spec.TerminationMessagePolicy == corev1.TerminationMessageFallbackToLogsOnError && st.ExitCode != 0
	msg, checkLogs := readTerminationMessage(st.Labels[labelTerminationMessage], fallback)
	if checkLogs {
		msg = lastLogString(ctx, st.LogPath)
	}
	if msg == "" {
		return st
	}
	out := *st
	if out.Message != "" {
		out.Message += ": "
	}
	out.Message += msg
	return &out
}

// readTerminationMessage is the kubelet's getTerminationMessage.
func readTerminationMessage(path string, fallback bool) (string, bool) {
	if path == "" {
		return "", fallback
	}
	data, err := readAtMost(path, maxTerminationMessageLength)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fallback
		}
		return fmt.Sprintf("Error on reading termination log %s: %v", path, err), false
	}
	return string(data), fallback && len(data) == 0
}

// readAtMost reads the last max bytes of a file (the kubelet's tail.ReadAtMost).
func readAtMost(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if size := fi.Size(); size > max {
		if _, err := f.Seek(size-max, io.SeekStart); err != nil {
			return nil, err
		}
	}
	return io.ReadAll(io.LimitReader(f, max))
}

// lastLogString is the kubelet's readLastStringFromContainerLogs.
func lastLogString(ctx context.Context, path string) string {
	if path == "" {
		return ""
	}
	var buf bytes.Buffer
	if err := crilog.Read(ctx, path, crilog.Options{TailLines: maxTerminationMessageLogLines}, &buf); err != nil {
		return fmt.Sprintf("Error on reading termination message from logs: %v", err)
	}
	b := buf.Bytes()
	if len(b) > maxTerminationMessageLogLength {
		b = b[len(b)-maxTerminationMessageLogLength:]
	}
	return string(b)
}
