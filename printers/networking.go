package printers

import (
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
