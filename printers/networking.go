package printers

import (
	"fmt"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/sets"
)

// NetworkPolicyTable is what `kubectl get networkpolicies` prints, as Kubernetes' printer.
var NetworkPolicyTable = table(networkPolicyColumns, cells(networkPolicyRow))

var networkPolicyColumns = []metav1.TableColumnDefinition{
	nameColumn,
	{Name: "Pod-Selector", Type: "string", Description: networkingv1.NetworkPolicySpec{}.SwaggerDoc()["podSelector"]},
	ageColumn,
}

func networkPolicyRow(c clock, np *networkingv1.NetworkPolicy) []any {
	return []any{np.Name, metav1.FormatLabelSelector(&np.Spec.PodSelector), c.since(np.CreationTimestamp)}
}

// The columns of networking.k8s.io's IPAddress and ServiceCIDR, as Kubernetes prints them.
var (
	IPAddressTable   = table(ipAddressColumns, cells(ipAddressRow))
	ServiceCIDRTable = table(serviceCIDRColumns, cells(serviceCIDRRow))
)

var ipAddressColumns = []metav1.TableColumnDefinition{
	nameColumn,
	{Name: "ParentRef", Type: "string", Description: networkingv1.IPAddressSpec{}.SwaggerDoc()["parentRef"]},
}

func ipAddressRow(_ clock, ip *networkingv1.IPAddress) []any {
	parent := "<none>"
	if r := ip.Spec.ParentRef; r != nil {
		parent = strings.ToLower(schema.GroupResource{Group: r.Group, Resource: r.Resource}.String())
		if r.Namespace != "" {
			parent += "/" + r.Namespace
		}
		parent += "/" + r.Name
	}
	return []any{ip.Name, parent}
}

var serviceCIDRColumns = []metav1.TableColumnDefinition{
	nameColumn,
	{Name: "CIDRs", Type: "string", Description: networkingv1.ServiceCIDRSpec{}.SwaggerDoc()["cidrs"]},
	ageColumn,
}

func serviceCIDRRow(c clock, s *networkingv1.ServiceCIDR) []any {
	return []any{s.Name, strings.Join(s.Spec.CIDRs, ","), c.since(s.CreationTimestamp)}
}

// The columns of Ingress and IngressClass, as Kubernetes prints them (`kubectl get ingress`:
// NAME CLASS HOSTS ADDRESS PORTS AGE).
var (
	IngressTable      = table(ingressColumns, cells(ingressRow))
	IngressClassTable = table(ingressClassColumns, cells(ingressClassRow))
)

var ingressColumns = []metav1.TableColumnDefinition{
	nameColumn,
	{Name: "Class", Type: "string", Description: "The name of the IngressClass resource that should be used for additional configuration"},
	{Name: "Hosts", Type: "string", Description: "Hosts that incoming requests are matched against before the ingress rule"},
	{Name: "Address", Type: "string", Description: "Address is a list containing ingress points for the load-balancer"},
	{Name: "Ports", Type: "string", Description: "Ports of TLS configurations that open"},
	ageColumn,
}

func ingressRow(c clock, ing *networkingv1.Ingress) []any {
	class := "<none>"
	if ing.Spec.IngressClassName != nil {
		class = *ing.Spec.IngressClassName
	}
	ports := "80"
	if len(ing.Spec.TLS) != 0 {
		ports = "80, 443"
	}
	return []any{ing.Name, class, ingressHosts(ing.Spec.Rules), ingressAddress(ing.Status.LoadBalancer), ports, c.since(ing.CreationTimestamp)}
}

// ingressHosts is Kubernetes' formatHosts: the first three hosts, "*" when none has one.
func ingressHosts(rules []networkingv1.IngressRule) string {
	const most = 3
	var list []string
	more := false
	for _, r := range rules {
		if len(list) == most {
			more = true
		}
		if !more && r.Host != "" {
			list = append(list, r.Host)
		}
	}
	if len(list) == 0 {
		return "*"
	}
	s := strings.Join(list, ",")
	if more {
		return fmt.Sprintf("%s + %d more...", s, len(rules)-most)
	}
	return s
}

// ingressAddress is Kubernetes' ingressLoadBalancerStatusStringer as the server computes it
// (wide: nothing truncated): the sorted, distinct IPs, else host names.
func ingressAddress(s networkingv1.IngressLoadBalancerStatus) string {
	set := sets.New[string]()
	for _, in := range s.Ingress {
		if in.IP != "" {
			set.Insert(in.IP)
		} else if in.Hostname != "" {
			set.Insert(in.Hostname)
		}
	}
	return strings.Join(sets.List(set), ",")
}

var ingressClassColumns = []metav1.TableColumnDefinition{
	nameColumn,
	{Name: "Controller", Type: "string", Description: "Controller that is responsible for handling this class"},
	{Name: "Parameters", Type: "string", Description: "A reference to a resource with additional parameters"},
	ageColumn,
}

func ingressClassRow(c clock, ic *networkingv1.IngressClass) []any {
	params := "<none>"
	if p := ic.Spec.Parameters; p != nil {
		params = p.Kind
		if p.APIGroup != nil {
			params += "." + *p.APIGroup
		}
		params += "/" + p.Name
	}
	return []any{ic.Name, ic.Spec.Controller, params, c.since(ic.CreationTimestamp)}
}
