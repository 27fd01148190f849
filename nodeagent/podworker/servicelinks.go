package podworker

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ServiceResolver, implemented by a Resolver, gives the Services whose environment variables a
// container gets: those of the pod's namespace and the `kubernetes` Service of `default`.
type ServiceResolver interface {
	Services(ctx context.Context, namespace string) ([]*corev1.Service, error)
}

// serviceEnv is the kubelet's getServiceEnvVarMap: the variables of the pod's namespace's
// Services (with enableServiceLinks, the default) and, always, of the `kubernetes` Service.
func (w *worker) serviceEnv(ctx context.Context, pod *corev1.Pod) (map[string]string, error) {
	m := map[string]string{}
	sr, ok := w.m.cfg.Resolver.(ServiceResolver)
	if !ok {
		return m, nil
	}
	links := pod.Spec.EnableServiceLinks == nil || *pod.Spec.EnableServiceLinks
	byName := map[string]*corev1.Service{}
	if links && pod.Namespace != metav1.NamespaceDefault {
		svcs, err := sr.Services(ctx, pod.Namespace)
		if err != nil {
			return nil, fmt.Errorf("failed to list services when setting up env vars: %w", err)
		}
		for _, s := range svcs {
			if isServiceIPSet(s) {
				byName[s.Name] = s
			}
		}
	}
	defaults, err := sr.Services(ctx, metav1.NamespaceDefault)
	if err != nil {
		return nil, fmt.Errorf("failed to list services when setting up env vars: %w", err)
	}
	for _, s := range defaults {
		if !isServiceIPSet(s) {
			continue
		}
		switch {
		case s.Name == "kubernetes":
			if _, ok := byName[s.Name]; !ok {
				byName[s.Name] = s
			}
		case links && pod.Namespace == metav1.NamespaceDefault:
			byName[s.Name] = s
		}
	}
	svcs := make([]*corev1.Service, 0, len(byName))
	for _, s := range byName {
		svcs = append(svcs, s)
	}
	sort.Slice(svcs, func(i, j int) bool { return svcs[i].Name < svcs[j].Name })
	for _, e := range ServiceEnv(svcs) {
		m[e.Name] = e.Value
	}
	return m, nil
}

func isServiceIPSet(s *corev1.Service) bool {
	return s.Spec.ClusterIP != corev1.ClusterIPNone && s.Spec.ClusterIP != ""
}

// ServiceEnv is the kubelet's envvars.FromServices: for each Service with a cluster IP,
// <NAME>_SERVICE_HOST, <NAME>_SERVICE_PORT (its first port), <NAME>_SERVICE_PORT_<PORTNAME> for
// named ports, and the Docker-link variables (<NAME>_PORT, <NAME>_PORT_<port>_<PROTO> and its
// _PROTO, _PORT, _ADDR).
func ServiceEnv(services []*corev1.Service) []corev1.EnvVar {
	var out []corev1.EnvVar
	for _, s := range services {
		if !isServiceIPSet(s) || len(s.Spec.Ports) == 0 {
			continue
		}
		prefix := envName(s.Name)
		name := prefix + "_SERVICE_HOST"
		out = append(out, corev1.EnvVar{Name: name, Value: s.Spec.ClusterIP})
		name = prefix + "_SERVICE_PORT"
		out = append(out, corev1.EnvVar{Name: name, Value: strconv.Itoa(int(s.Spec.Ports[0].Port))})
		for _, p := range s.Spec.Ports {
			if p.Name != "" {
				out = append(out, corev1.EnvVar{Name: name + "_" + envName(p.Name), Value: strconv.Itoa(int(p.Port))})
			}
		}
		for i, p := range s.Spec.Ports {
			proto := string(corev1.ProtocolTCP)
			if p.Protocol != "" {
				proto = string(p.Protocol)
			}
			hostPort := net.JoinHostPort(s.Spec.ClusterIP, strconv.Itoa(int(p.Port)))
			url := fmt.Sprintf("%s://%s", strings.ToLower(proto), hostPort)
			if i == 0 {
				out = append(out, corev1.EnvVar{Name: prefix + "_PORT", Value: url})
			}
			pp := fmt.Sprintf("%s_PORT_%d_%s", prefix, p.Port, strings.ToUpper(proto))
			out = append(out,
				corev1.EnvVar{Name: pp, Value: url},
				corev1.EnvVar{Name: pp + "_PROTO", Value: strings.ToLower(proto)},
				corev1.EnvVar{Name: pp + "_PORT", Value: strconv.Itoa(int(p.Port))},
				corev1.EnvVar{Name: pp + "_ADDR", Value: s.Spec.ClusterIP})
		}
	}
	return out
}

func envName(s string) string { return strings.ToUpper(strings.ReplaceAll(s, "-", "_")) }
