package builtin

import (
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/printers"
	"github.com/logplane/logplane/validation"
)

// event is core/v1 Event.
func event() *kinds.Kind {
	return &kinds.Kind{
		GroupVersionKind: gvk("", "v1", "Event"), Resource: "events", Singular: "event", ShortNames: []string{"ev"},
		Namespaced: true,
		Strategy: kinds.Typed[*corev1.Event]{
			Validate:       validation.Event,
			ValidateUpdate: validation.EventUpdate,
			Table:          printers.EventTable,
			Fields:         eventFields,
		}.Strategy(),
	}
}

// eventsV1 is events.k8s.io/v1 Event: core Events, converted, as Kubernetes stores one
// resource and serves it in both groups.
func eventsV1(core *kinds.Kind) *kinds.Kind {
	return &kinds.Kind{
		GroupVersionKind: gvk("events.k8s.io", "v1", "Event"), Resource: "events", Singular: "event", ShortNames: []string{"ev"},
		Namespaced: true,
		View:       &kinds.View{Of: core, ToStored: eventToCore, FromStored: eventFromCore, FieldLabels: eventsV1FieldLabels},
		Strategy: kinds.Typed[*eventsv1.Event]{
			Validate:       validation.EventsV1,
			ValidateUpdate: validation.EventsV1Update,
			Table:          printers.EventsV1Table,
		}.Strategy(),
	}
}

func eventFields(e *corev1.Event, s fields.Set) {
	s["involvedObject.kind"] = e.InvolvedObject.Kind
	s["involvedObject.namespace"] = e.InvolvedObject.Namespace
	s["involvedObject.name"] = e.InvolvedObject.Name
	s["involvedObject.uid"] = string(e.InvolvedObject.UID)
	s["involvedObject.apiVersion"] = e.InvolvedObject.APIVersion
	s["involvedObject.resourceVersion"] = e.InvolvedObject.ResourceVersion
	s["involvedObject.fieldPath"] = e.InvolvedObject.FieldPath
	s["reason"] = e.Reason
	s["reportingComponent"] = e.ReportingController
	// An event written through events.k8s.io has no source but a reporting controller.
	source := e.Source.Component
	if source == "" {
		source = e.ReportingController
	}
	s["source"] = source
	s["type"] = e.Type
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
