package printers

import (
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
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
