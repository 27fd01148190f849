package builtin

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// selectorString is a label selector as the scale subresource reports it ("" if invalid).
func selectorString(ls *metav1.LabelSelector) string {
	if ls == nil {
		return ""
	}
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return ""
	}
	return sel.String()
}
