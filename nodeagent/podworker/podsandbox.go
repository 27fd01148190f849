package podworker

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/logplane/logplane/dataplane/clusterdns"
	"github.com/logplane/logplane/dataplane/runtimeapi"
)

// etcHostsPath is where a container sees the pod's hosts file, and where the
// node's own is (the kubelet's etcHostsPath).
const etcHostsPath = "/etc/hosts"

// The kubelet's headers of the hosts files it manages.
const (
	managedHostsHeader                = "# Kubernetes-managed hosts file.\n"
	managedHostsHeaderWithHostNetwork = "# Kubernetes-managed hosts file (host network).\n"
)

// podHostnameAndDomain is the kubelet's GeneratePodHostNameAndDomain: the
// pod's hostname (spec.hostname, else its name, cut to 63 characters without
// a trailing '-' or '.') and, with spec.subdomain, its domain
// <subdomain>.<namespace>.svc.<cluster domain>.
func (w *worker) podHostnameAndDomain(pod *corev1.Pod) (string, string) {
	hostname := pod.Name
	if pod.Spec.Hostname != "" {
		hostname = pod.Spec.Hostname
	}
	if len(hostname) > 63 {
		if t := strings.TrimRight(hostname[:63], "-."); t != "" {
			hostname = t
		}
	}
	domain := ""
	if pod.Spec.Subdomain != "" {
		domain = fmt.Sprintf("%s.%s.svc.%s", pod.Spec.Subdomain, pod.Namespace, w.m.cfg.ClusterDomain)
	}
	return hostname, domain
}

// hostsFileContent is the kubelet's ensureHostsFile: for a pod on the host
// network, the node's hosts file under the kubelet's "(host network)"
// header; else the managed file (localhost entries, the pod's IP with its
// hostname, and its domain when it has one); then the pod's hostAliases.
func hostsFileContent(nodeHosts string, podIP, hostname, domain string, pod *corev1.Pod) ([]byte, error) {
	var b bytes.Buffer
	if pod.Spec.HostNetwork {
		content, err := os.ReadFile(nodeHosts)
		if err != nil {
			return nil, err
		}
		b.WriteString(managedHostsHeaderWithHostNetwork)
		b.Write(content)
	} else {
		b.WriteString(managedHostsHeader)
		b.WriteString("127.0.0.1\tlocalhost\n")
		b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
		b.WriteString("fe00::0\tip6-localnet\n")
		b.WriteString("fe00::0\tip6-mcastprefix\n")
		b.WriteString("fe00::1\tip6-allnodes\n")
		b.WriteString("fe00::2\tip6-allrouters\n")
		if podIP != "" {
			if domain != "" {
				fmt.Fprintf(&b, "%s\t%s.%s\t%s\n", podIP, hostname, domain, hostname)
			} else {
				fmt.Fprintf(&b, "%s\t%s\n", podIP, hostname)
			}
		}
	}
	if len(pod.Spec.HostAliases) > 0 {
		b.WriteString("\n# Entries added by HostAliases.\n")
		for _, a := range pod.Spec.HostAliases {
			fmt.Fprintf(&b, "%s\t%s\n", a.IP, strings.Join(a.Hostnames, "\t"))
		}
	}
	return b.Bytes(), nil
}

// podMounts are the mounts the kubelet adds to every container beside its
// volumes (makeMounts): the pod's hosts file at /etc/hosts, written anew for
// each container start as the kubelet's makeHostsMount (unless the container
// mounts a volume there itself), and the file of its termination message.
// The labels keep the termination message file with the instance.
func (w *worker) podMounts(pod *corev1.Pod, spec *corev1.Container) ([]runtimeapi.Mount, map[string]string, error) {
	var mounts []runtimeapi.Mount
	labels := map[string]string{}
	if w.m.cfg.Simulated {
		return nil, labels, nil
	}
	own := false
	for _, vm := range spec.VolumeMounts {
		own = own || vm.MountPath == etcHostsPath
	}
	if !own && (w.podIP(pod) != "" || pod.Spec.HostNetwork) {
		hostname, domain := w.podHostnameAndDomain(pod)
		content, err := hostsFileContent(w.m.cfg.NodeHostsFile, w.podIP(pod), hostname, domain, pod)
		if err != nil {
			return nil, nil, err
		}
		dir := filepath.Join(w.m.cfg.VolumeDir, string(pod.UID))
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, nil, err
		}
		p := filepath.Join(dir, "etc-hosts")
		if err := os.WriteFile(p, content, 0o644); err != nil {
			return nil, nil, err
		}
		if err := os.Chmod(p, 0o644); err != nil {
			return nil, nil, err
		}
		mounts = append(mounts, runtimeapi.Mount{HostPath: p, ContainerPath: etcHostsPath})
	}
	tm, err := w.terminationMessageMount(pod, spec)
	if err != nil {
		return nil, nil, err
	}
	if tm != nil {
		mounts = append(mounts, *tm)
		labels[labelTerminationMessage] = tm.HostPath
	}
	return mounts, labels, nil
}

// podDNS forms the pod's resolv.conf with clusterdns.PodResolvConf (a port
// of the kubelet's dns.Configurer.GetPodDNS) from the node's resolv.conf
// (Config.ResolvConf) and cluster DNS servers (Config.DNSServers), and
// records the kubelet's events: MissingClusterDNS when a ClusterFirst pod
// falls back to Default for want of cluster DNS, DNSConfigForming when a
// limit cut something.
func (w *worker) podDNS(pod *corev1.Pod) clusterdns.ResolvConf {
	node := clusterdns.NodeDNS{ClusterDNS: w.m.cfg.DNSServers, ClusterDomain: w.m.cfg.ClusterDomain}
	if w.m.cfg.NodeIP != "" {
		node.NodeIPs = []string{w.m.cfg.NodeIP}
	}
	if p := w.m.cfg.ResolvConf; p != "" {
		node.HostResolvConf = true
		f, err := os.Open(p)
		if err == nil {
			node.Host, err = clusterdns.ParseResolvConf(f)
			f.Close() // read only
		}
		if err != nil {
			// As the kubelet, which forms the pod's file from what it could read.
			w.report(fmt.Errorf("podworker: the node's resolv.conf: %w", err))
		}
	}
	rc, warnings, err := clusterdns.PodResolvConf(pod, node)
	if err != nil {
		w.report(err)
	}
	for _, msg := range warnings {
		if w.m.cfg.Simulated {
			break
		}
		reason := "DNSConfigForming"
		if strings.Contains(msg, "does not have ClusterDNS IP configured") {
			reason = "MissingClusterDNS"
		}
		w.event(pod, "", EventWarning, reason, msg)
	}
	return rc
}
