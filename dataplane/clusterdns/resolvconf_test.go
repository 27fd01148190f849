package clusterdns_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/logplane/logplane/dataplane/clusterdns"
)

// The cases below mirror the kubelet's pkg/kubelet/network/dns/dns_test.go.

func TestParseResolvConf(t *testing.T) {
	for i, c := range []struct {
		data                           string
		nameservers, searches, options []string
		isErr                          bool
	}{
		{"", []string{}, []string{}, []string{}, false},
		{" ", []string{}, []string{}, []string{}, false},
		{"\n", []string{}, []string{}, []string{}, false},
		{"\t\n\t", []string{}, []string{}, []string{}, false},
		{"#comment\n", []string{}, []string{}, []string{}, false},
		{" #comment\n", []string{}, []string{}, []string{}, false},
		{"#comment\n#comment", []string{}, []string{}, []string{}, false},
		{"#comment\nnameserver", []string{}, []string{}, []string{}, true},
		{"#comment\nnameserver\nsearch", []string{}, []string{}, []string{}, true},
		{"#comment\nnameserver 1.2.3.4\nsearch", []string{"1.2.3.4"}, []string{}, []string{}, false},
		{"nameserver 1.2.3.4", []string{"1.2.3.4"}, []string{}, []string{}, false},
		{" nameserver 1.2.3.4", []string{"1.2.3.4"}, []string{}, []string{}, false},
		{"\tnameserver 1.2.3.4", []string{"1.2.3.4"}, []string{}, []string{}, false},
		{"nameserver\t1.2.3.4", []string{"1.2.3.4"}, []string{}, []string{}, false},
		{"nameserver \t 1.2.3.4", []string{"1.2.3.4"}, []string{}, []string{}, false},
		{"nameserver 1.2.3.4\nnameserver 5.6.7.8", []string{"1.2.3.4", "5.6.7.8"}, []string{}, []string{}, false},
		{"nameserver 1.2.3.4 #comment", []string{"1.2.3.4"}, []string{}, []string{}, false},
		{"search ", []string{}, []string{}, []string{}, false},
		{"search foo", []string{}, []string{"foo"}, []string{}, false},
		{"search foo bar", []string{}, []string{"foo", "bar"}, []string{}, false},
		{"search foo. bar", []string{}, []string{"foo", "bar"}, []string{}, false},
		{"search foo bar bat\n", []string{}, []string{"foo", "bar", "bat"}, []string{}, false},
		{"search foo\nsearch bar", []string{}, []string{"bar"}, []string{}, false},
		{"nameserver 1.2.3.4\nsearch foo bar", []string{"1.2.3.4"}, []string{"foo", "bar"}, []string{}, false},
		{"nameserver 1.2.3.4\nsearch foo\nnameserver 5.6.7.8\nsearch bar", []string{"1.2.3.4", "5.6.7.8"}, []string{"bar"}, []string{}, false},
		{"#comment\nnameserver 1.2.3.4\n#comment\nsearch foo\ncomment", []string{"1.2.3.4"}, []string{"foo"}, []string{}, false},
		{"options ", []string{}, []string{}, []string{}, false},
		{"options ndots:5 attempts:2", []string{}, []string{}, []string{"ndots:5", "attempts:2"}, false},
		{"options ndots:1\noptions ndots:5 attempts:3", []string{}, []string{}, []string{"ndots:5", "attempts:3"}, false},
		{"nameserver 1.2.3.4\nsearch foo\nnameserver 5.6.7.8\nsearch bar\noptions ndots:5 attempts:4", []string{"1.2.3.4", "5.6.7.8"}, []string{"bar"}, []string{"ndots:5", "attempts:4"}, false},
	} {
		rc, err := clusterdns.ParseResolvConf(strings.NewReader(c.data))
		if c.isErr {
			if err == nil {
				t.Errorf("case %d (%q): no error", i, c.data)
			}
			continue
		}
		if err != nil {
			t.Errorf("case %d (%q): %v", i, c.data, err)
			continue
		}
		if !slices.Equal(rc.Nameservers, c.nameservers) || !slices.Equal(rc.Searches, c.searches) || !slices.Equal(rc.Options, c.options) {
			t.Errorf("case %d (%q): %+v, want %v %v %v", i, c.data, rc, c.nameservers, c.searches, c.options)
		}
	}
}

func testPod(dnsPolicy corev1.DNSPolicy, hostNetwork bool, dc *corev1.PodDNSConfig) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "test_pod", Namespace: "testNS"},
		Spec: corev1.PodSpec{DNSPolicy: dnsPolicy, HostNetwork: hostNetwork, DNSConfig: dc}}
}

// searchLimits: the kubelet's TestFormDNSSearchFitsLimits, through a DNSNone pod whose
// dnsConfig carries the list (ExpandedDNSConfig is GA: 32 domains, 2048 characters).
func TestSearchLimits(t *testing.T) {
	// 2048 = 128 + 127 * 15 + 15; distinct domains, since a dnsConfig's duplicates are merged.
	list2048 := []string{strings.Repeat("A", 128)}
	for i := range 15 {
		list2048 = append(list2048, strings.Repeat("A", 126)+string(rune('a'+i)))
	}
	n := func(from, to int) []string {
		var s []string
		for i := from; i <= to; i++ {
			s = append(s, strconv.Itoa(i))
		}
		return s
	}
	first := []string{"testNS.svc.TEST", "svc.TEST", "TEST"}
	for _, c := range []struct {
		desc          string
		hostNames     []string
		want          []string
		wantWarnings  int
		wantEventText string
	}{
		{"valid: 3 search paths", first, first, 0, ""},
		{"valid: 5 search paths", append(slices.Clone(first), "AAA", "BBB"), append(slices.Clone(first), "AAA", "BBB"), 0, ""},
		{"invalid: longer than 256 characters in search path list", append(slices.Clone(first), "AAA", strings.Repeat("B", 256), "BBB"),
			append(slices.Clone(first), "AAA", "BBB"), 1, "testNS.svc.TEST svc.TEST TEST AAA BBB"},
		{"valid: 2048 characters in search path list", list2048, list2048, 0, ""},
		{"invalid: 2050 characters in search path list", append(slices.Clone(list2048), "B"), list2048, 1, strings.Join(list2048, " ")},
		{"valid: 32 search paths", append(slices.Clone(first), n(4, 32)...), append(slices.Clone(first), n(4, 32)...), 0, ""},
		{"invalid: 33 search paths", append(slices.Clone(first), n(4, 33)...), append(slices.Clone(first), n(4, 32)...), 1,
			strings.Join(append(slices.Clone(first), n(4, 32)...), " ")},
	} {
		t.Run(c.desc, func(t *testing.T) {
			rc, warnings, err := clusterdns.PodResolvConf(testPod(corev1.DNSNone, false, &corev1.PodDNSConfig{Searches: c.hostNames}), clusterdns.NodeDNS{ClusterDomain: "TEST"})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(rc.Searches, c.want) {
				t.Errorf("searches %v, want %v", rc.Searches, c.want)
			}
			if len(warnings) != c.wantWarnings {
				t.Fatalf("warnings %q, want %d", warnings, c.wantWarnings)
			}
			if c.wantWarnings > 0 {
				if want := "Search Line limits were exceeded, some search paths have been omitted, the applied search line is: " + c.wantEventText; warnings[0] != want {
					t.Errorf("warning %q, want %q", warnings[0], want)
				}
			}
		})
	}
}

func TestNameserverLimits(t *testing.T) {
	for _, c := range []struct {
		desc        string
		nameservers []string
		want        []string
		warn        bool
	}{
		{"valid: 1 nameserver", []string{"127.0.0.1"}, []string{"127.0.0.1"}, false},
		{"valid: 3 nameservers", []string{"127.0.0.1", "10.0.0.10", "8.8.8.8"}, []string{"127.0.0.1", "10.0.0.10", "8.8.8.8"}, false},
		{"invalid: 4 nameservers, trimmed to 3", []string{"127.0.0.1", "10.0.0.10", "8.8.8.8", "1.2.3.4"}, []string{"127.0.0.1", "10.0.0.10", "8.8.8.8"}, true},
	} {
		rc, warnings, err := clusterdns.PodResolvConf(testPod(corev1.DNSNone, false, &corev1.PodDNSConfig{Nameservers: c.nameservers}), clusterdns.NodeDNS{})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(rc.Nameservers, c.want) || (len(warnings) > 0) != c.warn {
			t.Errorf("%s: %v %q", c.desc, rc.Nameservers, warnings)
		}
	}
}

func TestMergeOptions(t *testing.T) {
	three := "3"
	for _, c := range []struct {
		desc string
		host []string
		pod  []corev1.PodDNSConfigOption
		want []string
	}{
		{"Empty dnsConfigOptions", []string{"ndots:5", "debug"}, nil, []string{"ndots:5", "debug"}},
		{"No duplicated entries", []string{"ndots:5", "debug"},
			[]corev1.PodDNSConfigOption{{Name: "single-request"}, {Name: "attempts", Value: &three}},
			[]string{"ndots:5", "debug", "single-request", "attempts:3"}},
		{"Overwrite duplicated entries", []string{"ndots:5", "debug"},
			[]corev1.PodDNSConfigOption{{Name: "ndots", Value: &three}, {Name: "debug"}, {Name: "single-request"}, {Name: "attempts", Value: &three}},
			[]string{"ndots:3", "debug", "single-request", "attempts:3"}},
	} {
		node := clusterdns.NodeDNS{Host: clusterdns.ResolvConf{Options: c.host}, HostResolvConf: true}
		rc, _, err := clusterdns.PodResolvConf(testPod(corev1.DNSDefault, false, &corev1.PodDNSConfig{Options: c.pod}), node)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(rc.Options, c.want) {
			t.Errorf("%s: %v, want %v", c.desc, rc.Options, c.want)
		}
	}
}

// TestPodDNSType: the kubelet's TestGetPodDNSType, seen through the result.
func TestPodDNSType(t *testing.T) {
	node := clusterdns.NodeDNS{ClusterDNS: []string{"203.0.113.1"}, ClusterDomain: "TEST"}
	for _, c := range []struct {
		desc        string
		hostNetwork bool
		policy      corev1.DNSPolicy
		cluster     bool // the pod gets the cluster's nameserver
		err         bool
	}{
		{"valid DNSClusterFirst without hostnetwork", false, corev1.DNSClusterFirst, true, false},
		{"valid DNSClusterFirstWithHostNet with hostnetwork", true, corev1.DNSClusterFirstWithHostNet, true, false},
		{"valid DNSClusterFirstWithHostNet without hostnetwork", false, corev1.DNSClusterFirstWithHostNet, true, false},
		{"valid DNSDefault without hostnetwork", false, corev1.DNSDefault, false, false},
		{"valid DNSDefault with hostnetwork", true, corev1.DNSDefault, false, false},
		{"DNSClusterFirst with hostnetwork, fallback to DNSDefault", true, corev1.DNSClusterFirst, false, false},
		{"invalid DNS policy, should return error", false, "invalidPolicy", true, true},
	} {
		rc, _, err := clusterdns.PodResolvConf(testPod(c.policy, c.hostNetwork, nil), node)
		if (err != nil) != c.err {
			t.Errorf("%s: error %v", c.desc, err)
		}
		if got := slices.Equal(rc.Nameservers, []string{"203.0.113.1"}); got != c.cluster {
			t.Errorf("%s: nameservers %v", c.desc, rc.Nameservers)
		}
	}
}

// TestPodResolvConf: the kubelet's testGetPodDNS (no --resolv-conf) and TestGetPodDNSCustom.
func TestPodResolvConf(t *testing.T) {
	node := clusterdns.NodeDNS{ClusterDNS: []string{"203.0.113.1"}, ClusterDomain: "kubernetes.io"}
	for _, c := range []struct {
		policy      corev1.DNSPolicy
		hostNetwork bool
		servers     []string
		firstSearch string
	}{
		{corev1.DNSClusterFirstWithHostNet, true, []string{"203.0.113.1"}, "testNS.svc.kubernetes.io"},
		{corev1.DNSClusterFirst, true, []string{"127.0.0.1"}, "."},
		{corev1.DNSClusterFirst, false, []string{"203.0.113.1"}, "testNS.svc.kubernetes.io"},
		{corev1.DNSDefault, true, []string{"127.0.0.1"}, "."},
	} {
		rc, _, err := clusterdns.PodResolvConf(testPod(c.policy, c.hostNetwork, nil), node)
		if err != nil || !slices.Equal(rc.Nameservers, c.servers) || len(rc.Searches) == 0 || rc.Searches[0] != c.firstSearch {
			t.Errorf("%s hostNetwork=%v: %+v %v", c.policy, c.hostNetwork, rc, err)
		}
	}

	ndots := "3"
	dc := &corev1.PodDNSConfig{Nameservers: []string{"10.0.0.11"}, Searches: []string{"my.domain"},
		Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: &ndots}, {Name: "debug"}}}
	node = clusterdns.NodeDNS{ClusterDNS: []string{"10.0.0.10"}, ClusterDomain: "kubernetes.io",
		Host: clusterdns.ResolvConf{Nameservers: []string{"8.8.8.8"}, Searches: []string{"host.domain"}}, HostResolvConf: true}
	for _, c := range []struct {
		desc        string
		hostNetwork bool
		policy      corev1.DNSPolicy
		dc          *corev1.PodDNSConfig
		want        clusterdns.ResolvConf
		file        string
	}{
		{"DNSNone without DNSConfig should have empty DNS settings", false, corev1.DNSNone, nil, clusterdns.ResolvConf{}, ""},
		{"DNSNone with DNSConfig should have a merged DNS settings", false, corev1.DNSNone,
			&corev1.PodDNSConfig{Nameservers: []string{"203.0.113.1"}, Searches: []string{"my.domain", "second.domain"}, Options: dc.Options},
			clusterdns.ResolvConf{Nameservers: []string{"203.0.113.1"}, Searches: []string{"my.domain", "second.domain"}, Options: []string{"ndots:3", "debug"}},
			"search my.domain second.domain\nnameserver 203.0.113.1\noptions ndots:3 debug\n"},
		{"DNSClusterFirst with DNSConfig should have a merged DNS settings", false, corev1.DNSClusterFirst, dc,
			clusterdns.ResolvConf{Nameservers: []string{"10.0.0.10", "10.0.0.11"},
				Searches: []string{"testNS.svc.kubernetes.io", "svc.kubernetes.io", "kubernetes.io", "host.domain", "my.domain"}, Options: []string{"ndots:3", "debug"}},
			"search testNS.svc.kubernetes.io svc.kubernetes.io kubernetes.io host.domain my.domain\nnameserver 10.0.0.10\nnameserver 10.0.0.11\noptions ndots:3 debug\n"},
		{"DNSClusterFirstWithHostNet with DNSConfig should have a merged DNS settings", true, corev1.DNSClusterFirstWithHostNet, dc,
			clusterdns.ResolvConf{Nameservers: []string{"10.0.0.10", "10.0.0.11"},
				Searches: []string{"testNS.svc.kubernetes.io", "svc.kubernetes.io", "kubernetes.io", "host.domain", "my.domain"}, Options: []string{"ndots:3", "debug"}}, ""},
		{"DNSDefault with DNSConfig should have a merged DNS settings", false, corev1.DNSDefault, dc,
			clusterdns.ResolvConf{Nameservers: []string{"8.8.8.8", "10.0.0.11"}, Searches: []string{"host.domain", "my.domain"}, Options: []string{"ndots:3", "debug"}}, ""},
		{"ClusterFirst without DNSConfig: the kubelet's usual file", false, corev1.DNSClusterFirst, nil,
			clusterdns.ResolvConf{Nameservers: []string{"10.0.0.10"}, Searches: []string{"testNS.svc.kubernetes.io", "svc.kubernetes.io", "kubernetes.io", "host.domain"}, Options: []string{"ndots:5"}},
			"search testNS.svc.kubernetes.io svc.kubernetes.io kubernetes.io host.domain\nnameserver 10.0.0.10\noptions ndots:5\n"},
	} {
		t.Run(c.desc, func(t *testing.T) {
			rc, _, err := clusterdns.PodResolvConf(testPod(c.policy, c.hostNetwork, c.dc), node)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(rc.Nameservers, c.want.Nameservers) || !slices.Equal(rc.Searches, c.want.Searches) || !slices.Equal(rc.Options, c.want.Options) {
				t.Errorf("%+v, want %+v", rc, c.want)
			}
			if c.file != "" && rc.String() != c.file {
				t.Errorf("file\n%s\nwant\n%s", rc.String(), c.file)
			}
		})
	}

	// Without cluster DNS a ClusterFirst pod falls back to Default, with a warning.
	rc, warnings, err := clusterdns.PodResolvConf(testPod(corev1.DNSClusterFirst, false, nil), clusterdns.NodeDNS{ClusterDomain: "kubernetes.io",
		Host: clusterdns.ResolvConf{Nameservers: []string{"8.8.8.8"}}, HostResolvConf: true})
	if err != nil || !slices.Equal(rc.Nameservers, []string{"8.8.8.8"}) || len(warnings) != 1 || !strings.Contains(warnings[0], "does not have ClusterDNS IP configured") {
		t.Errorf("no cluster DNS: %+v %q %v", rc, warnings, err)
	}
}
