package kinds

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// A kind served by conversion from another (a view) stores its objects as that kind: Kubernetes
// stores one resource, events, and serves it as core v1 Events and as events.k8s.io/v1 Events.
// ToStored and FromStored convert between the two; SelectableField maps a view's field
// selectors onto the stored kind's selectable fields.

// ToStored returns obj, an object of kind k, as an object of k.Stored(). For a kind that is its
// own storage, obj itself.
func (k *Kind) ToStored(obj runtime.Object) runtime.Object {
	if k.storedAs == nil {
		return obj
	}
	out := k.toStored(obj)
	out.GetObjectKind().SetGroupVersionKind(k.storedAs.GroupVersionKind)
	return out
}

// FromStored returns obj, an object of k.Stored(), as an object of kind k. For a kind that is
// its own storage, obj itself.
func (k *Kind) FromStored(obj runtime.Object) runtime.Object {
	if k.storedAs == nil {
		return obj
	}
	out := k.fromStored(obj)
	out.GetObjectKind().SetGroupVersionKind(k.GroupVersionKind)
	return out
}

// SelectableField returns the stored kind's field that a field selector on label selects, as
// the kind's field label conversion does in Kubernetes; false for a field that may not be
// selected on.
func (k *Kind) SelectableField(label string) (string, bool) {
	if k.fieldLabels != nil {
		f, ok := k.fieldLabels[label]
		return f, ok
	}
	_, ok := k.Fields(k.New())[label]
	return label, ok
}

// eventsV1FieldLabels is Kubernetes' AddFieldLabelConversionsForEvent of events.k8s.io/v1: the
// selectable fields of an events.k8s.io Event and the core fields they are.
var eventsV1FieldLabels = map[string]string{
	"reason":                    "reason",
	"regarding.kind":            "involvedObject.kind",
	"regarding.namespace":       "involvedObject.namespace",
	"regarding.name":            "involvedObject.name",
	"regarding.uid":             "involvedObject.uid",
	"regarding.apiVersion":      "involvedObject.apiVersion",
	"regarding.resourceVersion": "involvedObject.resourceVersion",
	"regarding.fieldPath":       "involvedObject.fieldPath",
	"reportingController":       "reportingComponent",
	"type":                      "type",
	"metadata.namespace":        "metadata.namespace",
	"metadata.name":             "metadata.name",
}

// eventToCore is Convert_v1_Event_To_core_Event (events.k8s.io/v1 to core, which is what core
// v1 holds).
func eventToCore(obj runtime.Object) runtime.Object {
	in := obj.(*eventsv1.Event)
	out := &corev1.Event{
		ObjectMeta:          *in.ObjectMeta.DeepCopy(),
		InvolvedObject:      in.Regarding,
		Reason:              in.Reason,
		Message:             in.Note,
		Source:              in.DeprecatedSource,
		FirstTimestamp:      in.DeprecatedFirstTimestamp,
		LastTimestamp:       in.DeprecatedLastTimestamp,
		Count:               in.DeprecatedCount,
		Type:                in.Type,
		EventTime:           in.EventTime,
		Action:              in.Action,
		ReportingController: in.ReportingController,
		ReportingInstance:   in.ReportingInstance,
	}
	if in.Series != nil {
		out.Series = &corev1.EventSeries{Count: in.Series.Count, LastObservedTime: in.Series.LastObservedTime}
	}
	if in.Related != nil {
		r := *in.Related
		out.Related = &r
	}
	return out
}

// eventFromCore is Convert_core_Event_To_v1_Event.
func eventFromCore(obj runtime.Object) runtime.Object {
	in := obj.(*corev1.Event)
	out := &eventsv1.Event{
		ObjectMeta:               *in.ObjectMeta.DeepCopy(),
		EventTime:                in.EventTime,
		ReportingController:      in.ReportingController,
		ReportingInstance:        in.ReportingInstance,
		Action:                   in.Action,
		Reason:                   in.Reason,
		Regarding:                in.InvolvedObject,
		Note:                     in.Message,
		Type:                     in.Type,
		DeprecatedSource:         in.Source,
		DeprecatedFirstTimestamp: in.FirstTimestamp,
		DeprecatedLastTimestamp:  in.LastTimestamp,
		DeprecatedCount:          in.Count,
	}
	if in.Series != nil {
		out.Series = &eventsv1.EventSeries{Count: in.Series.Count, LastObservedTime: in.Series.LastObservedTime}
	}
	if in.Related != nil {
		r := *in.Related
		out.Related = &r
	}
	return out
}

// Converter converts objects between versions for server-side apply's field managers: the
// catalog's scheme, plus the conversions of kinds served by conversion (an Event's managed
// fields recorded through events.k8s.io/v1 are kept when core v1 changes it, and the other way
// round). The versioned objects are their own hub (the scheme has no internal types).
type Converter struct{}

var _ runtime.ObjectConvertor = Converter{}

// Convert is the scheme's.
func (Converter) Convert(in, out, context any) error { return Scheme.Convert(in, out, context) }

// ConvertFieldLabel is the scheme's.
func (Converter) ConvertFieldLabel(gvk schema.GroupVersionKind, label, value string) (string, string, error) {
	return Scheme.ConvertFieldLabel(gvk, label, value)
}

// ConvertToVersion converts in to the version target names.
func (Converter) ConvertToVersion(in runtime.Object, target runtime.GroupVersioner) (runtime.Object, error) {
	from := in.GetObjectKind().GroupVersionKind()
	if from.Kind != "Event" || (from.Group != "" && from.Group != eventsv1.GroupName) {
		return Scheme.ConvertToVersion(in, target)
	}
	to, ok := target.KindForGroupVersionKinds([]schema.GroupVersionKind{
		corev1.SchemeGroupVersion.WithKind("Event"), eventsv1.SchemeGroupVersion.WithKind("Event")})
	if gv, isGV := target.(schema.GroupVersion); isGV && gv.Version == runtime.APIVersionInternal {
		return in, nil // the hub: the versioned object itself
	}
	if !ok {
		return nil, runtime.NewNotRegisteredGVKErrForTarget(Scheme.Name(), from, target)
	}
	if to == from {
		return in, nil
	}
	_, unstructured := in.(runtime.Unstructured)
	typed := in
	if unstructured {
		t, err := Scheme.New(from)
		if err != nil {
			return nil, err
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(in.(runtime.Unstructured).UnstructuredContent(), t); err != nil {
			return nil, fmt.Errorf("kinds: converting %v: %w", from, err)
		}
		typed = t
	}
	var out runtime.Object
	switch typed.(type) {
	case *corev1.Event:
		out = eventFromCore(typed)
	case *eventsv1.Event:
		out = eventToCore(typed)
	default:
		return nil, fmt.Errorf("kinds: cannot convert %T to %v", typed, to)
	}
	out.GetObjectKind().SetGroupVersionKind(to)
	if !unstructured {
		return out, nil
	}
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(out)
	if err != nil {
		return nil, err
	}
	u := in.(runtime.Unstructured).NewEmptyInstance()
	u.SetUnstructuredContent(content)
	u.GetObjectKind().SetGroupVersionKind(to)
	return u, nil
}
