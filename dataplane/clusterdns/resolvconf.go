package clusterdns

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// The kubelet's limits on a pod's resolv.conf (k8s.io/kubernetes pkg/apis/core/validation:
// MaxDNSNameservers, MaxDNSSearchPaths and MaxDNSSearchListChars since ExpandedDNSConfig went
// GA, and DNS1123SubdomainMaxLength for one search domain).
const (
	MaxNameservers     = 3
	MaxSearchPaths     = 32
	MaxSearchListChars = 2048
	maxSearchLength    = 253

	maxResolvConfLength = 10 << 20 // the kubelet reads at most 10 MB of the host's file
)

// ResolvConf is the content of a resolv.conf: what the kubelet calls a DNSConfig.
type ResolvConf struct {
	Nameservers []string
	Searches    []string
	Options     []string
}

// String renders the file as containerd's CRI plugin writes a sandbox's resolv.conf: the
// search line, one nameserver line per server, the options line; lines that would be empty
// are left out.
func (c ResolvConf) String() string {
	var b strings.Builder
	if len(c.Searches) > 0 {
		b.WriteString("search " + strings.Join(c.Searches, " ") + "\n")
	}
	for _, s := range c.Nameservers {
		b.WriteString("nameserver " + s + "\n")
	}
	if len(c.Options) > 0 {
		b.WriteString("options " + strings.Join(c.Options, " ") + "\n")
	}
	return b.String()
}

// ParseResolvConf reads a resolv.conf as the kubelet does (parseResolvConf): nameserver lines
// accumulate, the last search line and the last options line win, a search domain loses its
// trailing dot, comments start with '#'. A nameserver line without an address is an error,
// returned with what could be read.
func ParseResolvConf(r io.Reader) (ResolvConf, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxResolvConfLength+1))
	if err != nil {
		return ResolvConf{}, fmt.Errorf("clusterdns: reading resolv.conf: %w", err)
	}
	if len(data) > maxResolvConfLength {
		return ResolvConf{}, fmt.Errorf("clusterdns: resolv.conf is larger than %d bytes", maxResolvConfLength)
	}
	c := ResolvConf{Nameservers: []string{}, Searches: []string{}, Options: []string{}}
	var errs []error
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		switch fields[0] {
		case "nameserver":
			if len(fields) < 2 {
				errs = append(errs, errors.New("clusterdns: resolv.conf: nameserver list is empty"))
				continue
			}
			c.Nameservers = append(c.Nameservers, fields[1])
		case "search":
			c.Searches = []string{}
			for _, s := range fields[1:] {
				c.Searches = append(c.Searches, strings.TrimSuffix(s, "."))
			}
		case "options":
			c.Options = fields[1:]
		}
	}
	return c, errors.Join(errs...)
}

// NodeDNS is what a node knows when it forms its pods' resolv.conf: the kubelet's
// --cluster-dns, --cluster-domain and --resolv-conf.
type NodeDNS struct {
	// ClusterDNS are the cluster DNS server addresses (the kube-dns Service's IP). Without
	// them, ClusterFirst pods fall back to the Default policy, as the kubelet does.
	ClusterDNS []string
	// ClusterDomain, e.g. cluster.local; empty means no cluster search domains.
	ClusterDomain string
	// Host is the node's own resolv.conf (see ParseResolvConf). HostResolvConf false means
	// the kubelet's --resolv-conf="" : Default pods get nameserver 127.0.0.1 (::1 on an IPv6
	// node) and search ".".
	Host           ResolvConf
	HostResolvConf bool
	// NodeIPs decide 127.0.0.1 or ::1 when HostResolvConf is false.
	NodeIPs []string
}

// PodResolvConf forms a pod's resolv.conf as the kubelet's dns.Configurer.GetPodDNS does,
// for dnsPolicy ClusterFirst (Default for a hostNetwork pod), ClusterFirstWithHostNet,
// Default and None, merged with the pod's dnsConfig (nameservers and searches appended
// without duplicates, options overriding by name) and cut to the kubelet's limits (3
// nameservers, 32 search domains of at most 253 characters, 2048 characters in all). Each
// limit that cut something gives a warning, the text of the kubelet's DNSConfigForming
// event. An unknown dnsPolicy is treated as ClusterFirst and returns an error beside the
// result, as the kubelet logs it.
func PodResolvConf(pod *corev1.Pod, node NodeDNS) (ResolvConf, []string, error) {
	c := ResolvConf{
		Nameservers: append([]string(nil), node.Host.Nameservers...),
		Searches:    append([]string(nil), node.Host.Searches...),
		Options:     append([]string(nil), node.Host.Options...),
	}
	var warnings []string
	var policyErr error
	typ := podDNSCluster
	switch pod.Spec.DNSPolicy {
	case corev1.DNSNone:
		typ = podDNSNone
	case corev1.DNSClusterFirstWithHostNet:
	case corev1.DNSClusterFirst, "":
		// An empty policy is what the API server defaults to ClusterFirst.
		if pod.Spec.HostNetwork {
			typ = podDNSHost
		}
	case corev1.DNSDefault:
		typ = podDNSHost
	default:
		policyErr = fmt.Errorf("clusterdns: invalid DNSPolicy=%v", pod.Spec.DNSPolicy)
	}
	switch typ {
	case podDNSNone:
		c = ResolvConf{}
	case podDNSCluster:
		if len(node.ClusterDNS) > 0 {
			c.Nameservers = append([]string(nil), node.ClusterDNS...)
			c.Searches = clusterSearches(c.Searches, pod.Namespace, node.ClusterDomain)
			c.Options = []string{"ndots:5"}
			break
		}
		warnings = append(warnings, fmt.Sprintf("pod: %q. kubelet does not have ClusterDNS IP configured and cannot create Pod using %q policy. Falling back to %q policy.",
			pod.Namespace+"/"+pod.Name, corev1.DNSClusterFirst, corev1.DNSDefault))
		fallthrough
	case podDNSHost:
		if !node.HostResolvConf {
			c.Nameservers = nil
			for _, ip := range node.NodeIPs {
				if a, err := netip.ParseAddr(ip); err == nil && a.Is6() && !a.Is4In6() {
					c.Nameservers = append(c.Nameservers, "::1")
				} else {
					c.Nameservers = append(c.Nameservers, "127.0.0.1")
				}
			}
			if len(c.Nameservers) == 0 {
				c.Nameservers = []string{"127.0.0.1"}
			}
			c.Searches = []string{"."}
		}
	}
	if dc := pod.Spec.DNSConfig; dc != nil {
		c.Nameservers = omitDuplicates(append(c.Nameservers, dc.Nameservers...))
		c.Searches = omitDuplicates(append(c.Searches, dc.Searches...))
		c.Options = mergeOptions(c.Options, dc.Options)
	}
	if len(c.Nameservers) > MaxNameservers {
		c.Nameservers = c.Nameservers[:MaxNameservers]
		warnings = append(warnings, "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: "+strings.Join(c.Nameservers, " "))
	}
	var cut bool
	c.Searches, cut = searchesFitLimits(c.Searches)
	if cut {
		warnings = append(warnings, "Search Line limits were exceeded, some search paths have been omitted, the applied search line is: "+strings.Join(c.Searches, " "))
	}
	return c, warnings, policyErr
}

type podDNSType int

const (
	podDNSCluster podDNSType = iota
	podDNSHost
	podDNSNone
)

// clusterSearches is the kubelet's generateSearchesForDNSClusterFirst.
func clusterSearches(hostSearch []string, namespace, domain string) []string {
	if domain == "" {
		return hostSearch
	}
	return omitDuplicates(append([]string{namespace + ".svc." + domain, "svc." + domain, domain}, hostSearch...))
}

// searchesFitLimits is the kubelet's formDNSSearchFitsLimits: at most MaxSearchPaths
// domains, none longer than 253 characters, and the line at most MaxSearchListChars long
// (domains dropped from the end). It reports whether anything was cut.
func searchesFitLimits(s []string) ([]string, bool) {
	cut := false
	if len(s) > MaxSearchPaths {
		s, cut = s[:MaxSearchPaths], true
	}
	kept := s[:0:0]
	for _, d := range s {
		if len(d) > maxSearchLength {
			cut = true
			continue
		}
		kept = append(kept, d)
	}
	s = kept
	if l := len(strings.Join(s, " ")); l > MaxSearchListChars {
		n, dropped := len(s), 0
		for i := n - 1; i >= 0; i-- {
			dropped += len(s[i]) + 1
			n = i
			if l-dropped <= MaxSearchListChars {
				break
			}
		}
		s, cut = s[:n], true
	}
	return s, cut
}

func omitDuplicates(s []string) []string {
	seen := make(map[string]bool, len(s))
	var out []string
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// mergeOptions is the kubelet's mergeDNSOptions: the pod's options override the base's by
// name. Unlike the kubelet (which goes through a map), the order is stable: the base's
// options first, then the pod's new ones.
func mergeOptions(base []string, pod []corev1.PodDNSConfigOption) []string {
	var names []string
	values := map[string]string{}
	set := func(name, value string) {
		if _, ok := values[name]; !ok {
			names = append(names, name)
		}
		values[name] = value
	}
	for _, o := range base {
		name, value, _ := strings.Cut(o, ":")
		set(name, value)
	}
	for _, o := range pod {
		v := ""
		if o.Value != nil {
			v = *o.Value
		}
		set(o.Name, v)
	}
	out := []string{}
	for _, n := range names {
		if v := values[n]; v != "" {
			out = append(out, n+":"+v)
		} else {
			out = append(out, n)
		}
	}
	return out
}
