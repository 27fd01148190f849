package namespaces

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The namespace conditions the deletion maintains, with the reason and message of each when
// nothing is wrong, as Kubernetes' namespace deleter (status_condition_utils.go) sets them.
var (
	conditionTypes = []corev1.NamespaceConditionType{
		corev1.NamespaceDeletionDiscoveryFailure,
		corev1.NamespaceDeletionGVParsingFailure,
		corev1.NamespaceDeletionContentFailure,
		corev1.NamespaceContentRemaining,
		corev1.NamespaceFinalizersRemaining,
	}
	okMessages = map[corev1.NamespaceConditionType]string{
		corev1.NamespaceDeletionDiscoveryFailure: "All resources successfully discovered",
		corev1.NamespaceDeletionGVParsingFailure: "All legacy kube types successfully parsed",
		corev1.NamespaceDeletionContentFailure:   "All content successfully deleted, may be waiting on finalization",
		corev1.NamespaceContentRemaining:         "All content successfully removed",
		corev1.NamespaceFinalizersRemaining:      "All content-preserving finalizers finished",
	}
	okReasons = map[corev1.NamespaceConditionType]string{
		corev1.NamespaceDeletionDiscoveryFailure: "ResourcesDiscovered",
		corev1.NamespaceDeletionGVParsingFailure: "ParsedGroupVersions",
		corev1.NamespaceDeletionContentFailure:   "ContentDeleted",
		corev1.NamespaceContentRemaining:         "ContentRemoved",
		corev1.NamespaceFinalizersRemaining:      "ContentHasNoFinalizers",
	}
)

// contentTotals are what is left in a namespace after a deletion pass.
type contentTotals struct {
	// remaining counts the objects left, by resource.
	remaining map[schema.GroupVersionResource]int
	// finalizers counts the objects left, by finalizer they wait for.
	finalizers map[string]int
}

func (t *contentTotals) add(gvr schema.GroupVersionResource, d kindDeletion) {
	if d.remaining == 0 {
		return
	}
	t.remaining[gvr] += d.remaining
	for f, n := range d.finalizers {
		t.finalizers[f] += n
	}
}

// conditionUpdater gathers what a deletion pass found and turns it into the namespace's
// conditions (Kubernetes' namespaceConditionUpdater). The catalog is in the process, so the
// discovery and group version conditions always say that all went well.
type conditionUpdater struct {
	now                 metav1.Time
	conditions          []corev1.NamespaceCondition
	deleteContentErrors []error
}

// deleteContentErr records that deleting one resource's content failed.
func (u *conditionUpdater) deleteContentErr(err error) {
	u.deleteContentErrors = append(u.deleteContentErrors, err)
}

// contentTotals sets NamespaceContentRemaining and NamespaceFinalizersRemaining from what is
// left.
func (u *conditionUpdater) contentTotals(t contentTotals) {
	if len(t.remaining) > 0 {
		var left []string
		for gvr, n := range t.remaining {
			if n > 0 {
				left = append(left, fmt.Sprintf("%s.%s has %d resource instances", gvr.Resource, gvr.Group, n))
			}
		}
		slices.Sort(left)
		u.conditions = append(u.conditions, corev1.NamespaceCondition{
			Type: corev1.NamespaceContentRemaining, Status: corev1.ConditionTrue, LastTransitionTime: u.now,
			Reason: "SomeResourcesRemain", Message: "Some resources are remaining: " + strings.Join(left, ", "),
		})
	}
	if len(t.finalizers) > 0 {
		var left []string
		for f, n := range t.finalizers {
			if n > 0 {
				left = append(left, fmt.Sprintf("%s in %d resource instances", f, n))
			}
		}
		slices.Sort(left)
		u.conditions = append(u.conditions, corev1.NamespaceCondition{
			Type: corev1.NamespaceFinalizersRemaining, Status: corev1.ConditionTrue, LastTransitionTime: u.now,
			Reason: "SomeFinalizersRemain", Message: "Some content in the namespace has finalizers remaining: " + strings.Join(left, ", "),
		})
	}
}

// finish adds the content failure condition from the errors recorded; call it once, before
// update.
func (u *conditionUpdater) finish() {
	if len(u.deleteContentErrors) == 0 || condition(u.conditions, corev1.NamespaceDeletionContentFailure) != nil {
		return
	}
	msgs := make([]string, 0, len(u.deleteContentErrors))
	for _, e := range u.deleteContentErrors {
		msgs = append(msgs, e.Error())
	}
	slices.Sort(msgs)
	u.conditions = append(u.conditions, corev1.NamespaceCondition{
		Type: corev1.NamespaceDeletionContentFailure, Status: corev1.ConditionTrue, LastTransitionTime: u.now,
		Reason:  "ContentDeletionFailed",
		Message: fmt.Sprintf("Failed to delete all resource types, %d remaining: %v", len(u.deleteContentErrors), strings.Join(msgs, ", ")),
	})
}

// update sets every maintained condition of status: the one found, else its "ok" variant. A
// condition whose status changes gets a new lastTransitionTime. It reports whether anything
// changed.
func (u *conditionUpdater) update(status *corev1.NamespaceStatus) bool {
	changed := false
	for _, t := range conditionTypes {
		next := condition(u.conditions, t)
		if next == nil {
			next = &corev1.NamespaceCondition{Type: t, Status: corev1.ConditionFalse, LastTransitionTime: u.now,
				Reason: okReasons[t], Message: okMessages[t]}
		}
		cur := condition(status.Conditions, t)
		switch {
		case cur == nil:
			status.Conditions = append(status.Conditions, *next)
			changed = true
		case cur.Status != next.Status || cur.Reason != next.Reason || cur.Message != next.Message:
			if cur.Status != next.Status {
				cur.LastTransitionTime = u.now
			}
			cur.Status, cur.Reason, cur.Message = next.Status, next.Reason, next.Message
			changed = true
		}
	}
	return changed
}

func condition(cs []corev1.NamespaceCondition, t corev1.NamespaceConditionType) *corev1.NamespaceCondition {
	for i := range cs {
		if cs[i].Type == t {
			return &cs[i]
		}
	}
	return nil
}
