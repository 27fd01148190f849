package podworker

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// subPathExpr expands a volume mount's subPathExpr with the container's
// environment and checks the result, as the kubelet's makeMounts does
// (kubecontainer.ExpandContainerVolumeMounts, then the absolute path and
// ".." checks), with its messages: a reference to a variable that is unset
// or empty is an error, not left as written.
func (w *worker) subPathExpr(ctx context.Context, pod *corev1.Pod, spec *corev1.Container, vm corev1.VolumeMount) (string, error) {
	env, err := w.env(ctx, pod, spec)
	if err != nil {
		return "", err
	}
	vars := make(map[string]string, len(env))
	for _, e := range env {
		vars[e.name] = e.value
	}
	missing := map[string]bool{}
	sub := expandWith(vm.SubPathExpr, func(name string) string {
		v, ok := vars[name]
		if !ok || v == "" {
			missing[name] = true
		}
		return v
	})
	if len(missing) > 0 {
		names := make([]string, 0, len(missing))
		for n := range missing {
			names = append(names, n)
		}
		sort.Strings(names)
		return "", fmt.Errorf("missing value for %s", strings.Join(names, ", "))
	}
	if filepath.IsAbs(sub) {
		return "", fmt.Errorf("error SubPath `%s` must not be an absolute path", sub)
	}
	if err := noBacksteps(sub); err != nil {
		return "", fmt.Errorf("unable to provision SubPath `%s`: %w", sub, err)
	}
	return sub, nil
}

// noBacksteps is the kubelet's volume validation ValidatePathNoBacksteps.
func noBacksteps(p string) error {
	for _, item := range strings.Split(filepath.ToSlash(p), "/") {
		if item == ".." {
			return errors.New("must not contain '..'")
		}
	}
	return nil
}
