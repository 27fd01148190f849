package validation

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// MaxDataSize is the most a ConfigMap or a Secret may hold in all its values: 1 MiB.
const MaxDataSize = 1 << 20

// Namespace validates a new Namespace: its name (a DNS label) and its finalizers.
func Namespace(ns *corev1.Namespace) field.ErrorList {
	errs := clusterObjectMeta(&ns.ObjectMeta, apivalidation.ValidateNamespaceName)
	for i, f := range ns.Spec.Finalizers {
		errs = append(errs, apivalidation.ValidateFinalizerName(string(f), field.NewPath("spec", "finalizers").Index(i))...)
	}
	return errs
}

// NamespaceUpdate validates an update of a Namespace (old to new): metadata, immutable fields, spec.
func NamespaceUpdate(ns, old *corev1.Namespace) field.ErrorList {
	errs := metaUpdate(&ns.ObjectMeta, &old.ObjectMeta)
	for i, f := range ns.Spec.Finalizers {
		errs = append(errs, apivalidation.ValidateFinalizerName(string(f), field.NewPath("spec", "finalizers").Index(i))...)
	}
	return errs
}

func namespaceStatusUpdate(ns, old *corev1.Namespace) field.ErrorList {
	var errs field.ErrorList
	if ns.DeletionTimestamp.IsZero() {
		if ns.Status.Phase != corev1.NamespaceActive {
			errs = append(errs, field.Invalid(field.NewPath("status", "Phase"), ns.Status.Phase, "may only be 'Active' if `deletionTimestamp` is empty"))
		}
	} else if ns.Status.Phase != corev1.NamespaceTerminating {
		errs = append(errs, field.Invalid(field.NewPath("status", "Phase"), ns.Status.Phase, "may only be 'Terminating' if `deletionTimestamp` is not empty"))
	}
	return errs
}

// ConfigMap validates a new ConfigMap: metadata and spec, as Kubernetes does on create.
func ConfigMap(cm *corev1.ConfigMap) field.ErrorList {
	errs := objectMeta(&cm.ObjectMeta, apivalidation.NameIsDNSSubdomain)
	total := 0
	for _, key := range sortedKeys(cm.Data) {
		p := field.NewPath("data").Key(key)
		for _, msg := range utilvalidation.IsConfigMapKey(key) {
			errs = append(errs, field.Invalid(p, key, msg))
		}
		if _, dup := cm.BinaryData[key]; dup {
			errs = append(errs, field.Invalid(p, key, "duplicate of key present in binaryData"))
		}
		total += len(cm.Data[key])
	}
	for _, key := range sortedKeys(cm.BinaryData) {
		for _, msg := range utilvalidation.IsConfigMapKey(key) {
			errs = append(errs, field.Invalid(field.NewPath("binaryData").Key(key), key, msg))
		}
		total += len(cm.BinaryData[key])
	}
	if total > MaxDataSize {
		errs = append(errs, field.TooLong(field.NewPath(""), "", MaxDataSize))
	}
	return errs
}

// ConfigMapUpdate validates an update of a ConfigMap (old to new): metadata, immutable fields, spec.
func ConfigMapUpdate(cm, old *corev1.ConfigMap) field.ErrorList {
	errs := metaUpdate(&cm.ObjectMeta, &old.ObjectMeta)
	if old.Immutable != nil && *old.Immutable {
		if cm.Immutable == nil || !*cm.Immutable {
			errs = append(errs, field.Forbidden(field.NewPath("immutable"), "field is immutable when `immutable` is set"))
		}
		if !reflect.DeepEqual(cm.Data, old.Data) {
			errs = append(errs, field.Forbidden(field.NewPath("data"), "field is immutable when `immutable` is set"))
		}
		if !reflect.DeepEqual(cm.BinaryData, old.BinaryData) {
			errs = append(errs, field.Forbidden(field.NewPath("binaryData"), "field is immutable when `immutable` is set"))
		}
	}
	return append(errs, configMapData(cm)...)
}

// configMapData is the create validation without the metadata (which update checks its own way).
func configMapData(cm *corev1.ConfigMap) field.ErrorList {
	var errs field.ErrorList
	for _, e := range ConfigMap(cm) {
		if !isMetaError(e) {
			errs = append(errs, e)
		}
	}
	return errs
}

func isMetaError(e *field.Error) bool {
	return len(e.Field) >= len("metadata") && e.Field[:len("metadata")] == "metadata"
}

// Secret validates a new Secret: metadata and spec, as Kubernetes does on create.
func Secret(s *corev1.Secret) field.ErrorList {
	errs := objectMeta(&s.ObjectMeta, apivalidation.NameIsDNSSubdomain)
	return append(errs, secretData(s)...)
}

func secretData(s *corev1.Secret) field.ErrorList {
	var errs field.ErrorList
	dataPath := field.NewPath("data")
	total := 0
	for _, key := range sortedKeys(s.Data) {
		for _, msg := range utilvalidation.IsConfigMapKey(key) {
			errs = append(errs, field.Invalid(dataPath.Key(key), key, msg))
		}
		total += len(s.Data[key])
	}
	if total > MaxDataSize {
		errs = append(errs, field.TooLong(dataPath, "", MaxDataSize))
	}
	required := func(key string) {
		if _, ok := s.Data[key]; !ok {
			errs = append(errs, field.Required(dataPath.Key(key), ""))
		}
	}
	jsonKey := func(key string) {
		b, ok := s.Data[key]
		if !ok {
			errs = append(errs, field.Required(dataPath.Key(key), ""))
			return
		}
		if err := json.Unmarshal(b, &map[string]any{}); err != nil {
			errs = append(errs, field.Invalid(dataPath.Key(key), "<secret contents redacted>", err.Error()))
		}
	}
	switch s.Type {
	case corev1.SecretTypeServiceAccountToken:
		if s.Annotations[corev1.ServiceAccountNameKey] == "" {
			errs = append(errs, field.Required(metaPath.Child("annotations").Key(corev1.ServiceAccountNameKey), ""))
		}
	case corev1.SecretTypeDockercfg:
		jsonKey(corev1.DockerConfigKey)
	case corev1.SecretTypeDockerConfigJson:
		jsonKey(corev1.DockerConfigJsonKey)
	case corev1.SecretTypeBasicAuth:
		_, u := s.Data[corev1.BasicAuthUsernameKey]
		_, p := s.Data[corev1.BasicAuthPasswordKey]
		if !u && !p {
			required(corev1.BasicAuthUsernameKey)
			required(corev1.BasicAuthPasswordKey)
		}
	case corev1.SecretTypeSSHAuth:
		if len(s.Data[corev1.SSHAuthPrivateKey]) == 0 {
			errs = append(errs, field.Required(dataPath.Key(corev1.SSHAuthPrivateKey), ""))
		}
	case corev1.SecretTypeTLS:
		required(corev1.TLSCertKey)
		required(corev1.TLSPrivateKeyKey)
	}
	return errs
}

// SecretUpdate validates an update of a Secret (old to new): metadata, immutable fields, spec.
func SecretUpdate(s, old *corev1.Secret) field.ErrorList {
	errs := metaUpdate(&s.ObjectMeta, &old.ObjectMeta)
	errs = append(errs, apivalidation.ValidateImmutableField(s.Type, old.Type, field.NewPath("type"))...)
	if old.Immutable != nil && *old.Immutable {
		if s.Immutable == nil || !*s.Immutable {
			errs = append(errs, field.Forbidden(field.NewPath("immutable"), "field is immutable when `immutable` is set"))
		}
		if !reflect.DeepEqual(s.Data, old.Data) {
			errs = append(errs, field.Forbidden(field.NewPath("data"), "field is immutable when `immutable` is set"))
		}
	}
	return append(errs, secretData(s)...)
}

// Event is the legacy (core/v1) event validation: Kubernetes checks the namespace, and the
// newer fields only when eventTime is set; the name is not checked.
func Event(e *corev1.Event) field.ErrorList {
	return legacyEvent(e)
}

const (
	eventFieldLimit = 128
	noteLengthLimit = 1024
)

func legacyEvent(e *corev1.Event) field.ErrorList {
	var errs field.ErrorList
	invNS := field.NewPath("involvedObject", "namespace")
	if e.EventTime.IsZero() {
		if e.InvolvedObject.Namespace == "" {
			if e.Namespace != metav1.NamespaceNone && e.Namespace != metav1.NamespaceDefault {
				errs = append(errs, field.Invalid(invNS, e.InvolvedObject.Namespace, "does not match event.namespace"))
			}
		} else if e.Namespace != e.InvolvedObject.Namespace {
			errs = append(errs, field.Invalid(invNS, e.InvolvedObject.Namespace, "does not match event.namespace"))
		}
	} else {
		if e.InvolvedObject.Namespace == "" && e.Namespace != metav1.NamespaceDefault && e.Namespace != metav1.NamespaceSystem {
			errs = append(errs, field.Invalid(invNS, e.InvolvedObject.Namespace, "does not match event.namespace"))
		}
		rc := field.NewPath("reportingComponent")
		if e.ReportingController == "" {
			errs = append(errs, field.Required(rc, ""))
		}
		errs = append(errs, qualifiedName(e.ReportingController, rc)...)
		errs = append(errs, eventLimits(e.ReportingInstance, e.Action, e.Reason, e.Message, "message")...)
	}
	errs = append(errs, dns1123Subdomain(e.Namespace, field.NewPath("namespace"))...)
	return errs
}

func eventLimits(instance, action, reason, note, notePath string) field.ErrorList {
	var errs field.ErrorList
	check := func(v, name string, limit int) {
		if v == "" && name != notePath {
			errs = append(errs, field.Required(field.NewPath(name), ""))
		}
		if len(v) > limit {
			errs = append(errs, field.Invalid(field.NewPath(name), "", fmt.Sprintf("can have at most %v characters", limit)))
		}
	}
	check(instance, "reportingInstance", eventFieldLimit)
	check(action, "action", eventFieldLimit)
	check(reason, "reason", eventFieldLimit)
	check(note, notePath, noteLengthLimit)
	return errs
}

// EventsV1 is the strict validation of events created through events.k8s.io/v1.
func EventsV1(e *eventsv1.Event) field.ErrorList {
	errs := objectMeta(&e.ObjectMeta, apivalidation.NameIsDNSSubdomain)
	if e.Regarding.Namespace == "" && e.Namespace != metav1.NamespaceDefault && e.Namespace != metav1.NamespaceSystem {
		errs = append(errs, field.Invalid(field.NewPath("regarding", "namespace"), e.Regarding.Namespace, "does not match event.namespace"))
	}
	rc := field.NewPath("reportingController")
	if e.ReportingController == "" {
		errs = append(errs, field.Required(rc, ""))
	}
	errs = append(errs, qualifiedName(e.ReportingController, rc)...)
	errs = append(errs, eventLimits(e.ReportingInstance, e.Action, e.Reason, e.Note, "note")...)
	if e.EventTime.IsZero() {
		errs = append(errs, field.Required(field.NewPath("eventTime"), ""))
	}
	if e.Type != corev1.EventTypeNormal && e.Type != corev1.EventTypeWarning {
		errs = append(errs, field.Invalid(field.NewPath("type"), "", fmt.Sprintf("has invalid value: %v", e.Type)))
	}
	if !e.DeprecatedFirstTimestamp.IsZero() {
		errs = append(errs, field.Invalid(field.NewPath("deprecatedFirstTimestamp"), "", "needs to be unset"))
	}
	if !e.DeprecatedLastTimestamp.IsZero() {
		errs = append(errs, field.Invalid(field.NewPath("deprecatedLastTimestamp"), "", "needs to be unset"))
	}
	if e.DeprecatedCount != 0 {
		errs = append(errs, field.Invalid(field.NewPath("deprecatedCount"), "", "needs to be unset"))
	}
	if e.DeprecatedSource.Component != "" || e.DeprecatedSource.Host != "" {
		errs = append(errs, field.Invalid(field.NewPath("deprecatedSource"), "", "needs to be unset"))
	}
	if s := e.Series; s != nil {
		if s.Count < 2 {
			errs = append(errs, field.Invalid(field.NewPath("series", "count"), "", "should be at least 2"))
		}
		if s.LastObservedTime.IsZero() {
			errs = append(errs, field.Required(field.NewPath("series", "lastObservedTime"), ""))
		}
	}
	return errs
}

// EventsV1Update validates an update of a EventsV1 (old to new): metadata, immutable fields, spec.
func EventsV1Update(e, old *eventsv1.Event) field.ErrorList {
	errs := metaUpdate(&e.ObjectMeta, &old.ObjectMeta)
	immutable := []struct {
		name     string
		new, old any
	}{
		{"regarding", e.Regarding, old.Regarding},
		{"reason", e.Reason, old.Reason},
		{"note", e.Note, old.Note},
		{"reportingController", e.ReportingController, old.ReportingController},
		{"reportingInstance", e.ReportingInstance, old.ReportingInstance},
		{"action", e.Action, old.Action},
		{"type", e.Type, old.Type},
		{"eventTime", e.EventTime.Time.Truncate(time.Microsecond), old.EventTime.Time.Truncate(time.Microsecond)},
	}
	for _, f := range immutable {
		if !reflect.DeepEqual(f.new, f.old) {
			errs = append(errs, field.Invalid(field.NewPath(f.name), f.new, apivalidation.FieldImmutableErrorMsg))
		}
	}
	return errs
}

// Node validates a new Node.
func Node(n *corev1.Node) field.ErrorList {
	errs := clusterObjectMeta(&n.ObjectMeta, apivalidation.NameIsDNSSubdomain)
	return append(errs, nodeSpec(&n.Spec, field.NewPath("spec"))...)
}

func nodeSpec(s *corev1.NodeSpec, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, cidr := range s.PodCIDRs {
		errs = append(errs, utilvalidation.IsValidCIDR(fldPath.Child("podCIDRs").Index(i), cidr)...)
	}
	if s.PodCIDR != "" && len(s.PodCIDRs) > 0 && s.PodCIDR != s.PodCIDRs[0] {
		errs = append(errs, field.Invalid(fldPath.Child("podCIDRs").Index(0), s.PodCIDRs[0], "must match the first element of podCIDRs"))
	}
	seen := map[string]bool{}
	for i, t := range s.Taints {
		idx := fldPath.Child("taints").Index(i)
		errs = append(errs, metav1validation.ValidateLabelName(t.Key, idx.Child("key"))...)
		for _, msg := range utilvalidation.IsValidLabelValue(t.Value) {
			errs = append(errs, field.Invalid(idx.Child("value"), t.Value, msg))
		}
		switch {
		case t.Effect == "":
			errs = append(errs, field.Required(idx.Child("effect"), ""))
		case !contains(supportedTaintEffects, t.Effect):
			errs = append(errs, field.NotSupported(idx.Child("effect"), t.Effect, supportedTaintEffects))
		}
		key := t.Key + "/" + string(t.Effect)
		if seen[key] {
			errs = append(errs, field.Duplicate(idx, fmt.Sprintf("taints must be unique by key and effect pair")))
		}
		seen[key] = true
	}
	return errs
}

func nodeStatus(s *corev1.NodeStatus, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, name := range sortedKeys(resourceMap(s.Capacity)) {
		q := s.Capacity[corev1.ResourceName(name)]
		if q.Sign() < 0 {
			errs = append(errs, field.Invalid(fldPath.Child("capacity").Key(name), q.String(), isNegativeErrorMsg))
		}
	}
	for _, name := range sortedKeys(resourceMap(s.Allocatable)) {
		q := s.Allocatable[corev1.ResourceName(name)]
		if q.Sign() < 0 {
			errs = append(errs, field.Invalid(fldPath.Child("allocatable").Key(name), q.String(), isNegativeErrorMsg))
		}
	}
	return errs
}

// NodeUpdate validates an update of a Node (old to new): metadata, immutable fields, spec.
func NodeUpdate(n, old *corev1.Node) field.ErrorList {
	errs := metaUpdate(&n.ObjectMeta, &old.ObjectMeta)
	errs = append(errs, nodeSpec(&n.Spec, field.NewPath("spec"))...)
	if len(old.Spec.PodCIDRs) > 0 && !reflect.DeepEqual(old.Spec.PodCIDRs, n.Spec.PodCIDRs) {
		errs = append(errs, field.Forbidden(field.NewPath("spec", "podCIDRs"), "node updates may not change podCIDR except from \"\" to valid"))
	}
	if old.Spec.ProviderID != "" && old.Spec.ProviderID != n.Spec.ProviderID {
		errs = append(errs, field.Forbidden(field.NewPath("spec", "providerID"), "node updates may not change providerID except from \"\" to valid"))
	}
	return errs
}

// Endpoints validates a new Endpoints: metadata and spec, as Kubernetes does on create.
func Endpoints(e *corev1.Endpoints) field.ErrorList {
	return append(objectMeta(&e.ObjectMeta, apivalidation.NameIsDNSSubdomain), endpointSubsets(e)...)
}

func endpointSubsets(e *corev1.Endpoints) field.ErrorList {
	var errs field.ErrorList
	for i := range e.Subsets {
		ss := &e.Subsets[i]
		idx := field.NewPath("subsets").Index(i)
		if len(ss.Addresses) == 0 && len(ss.NotReadyAddresses) == 0 {
			errs = append(errs, field.Required(idx, "must specify `addresses` or `notReadyAddresses`"))
		}
		for j := range ss.Addresses {
			errs = append(errs, endpointAddress(&ss.Addresses[j], idx.Child("addresses").Index(j))...)
		}
		for j := range ss.NotReadyAddresses {
			errs = append(errs, endpointAddress(&ss.NotReadyAddresses[j], idx.Child("notReadyAddresses").Index(j))...)
		}
		for j := range ss.Ports {
			errs = append(errs, endpointPort(&ss.Ports[j], len(ss.Ports) > 1, idx.Child("ports").Index(j))...)
		}
	}
	return errs
}

func endpointAddress(a *corev1.EndpointAddress, fldPath *field.Path) field.ErrorList {
	errs := utilvalidation.IsValidIP(fldPath.Child("ip"), a.IP)
	if a.Hostname != "" {
		errs = append(errs, dns1123Label(a.Hostname, fldPath.Child("hostname"))...)
	}
	if a.NodeName != nil {
		for _, msg := range apivalidation.NameIsDNSSubdomain(*a.NodeName, false) {
			errs = append(errs, field.Invalid(fldPath.Child("nodeName"), *a.NodeName, msg))
		}
	}
	return errs
}

func endpointPort(p *corev1.EndpointPort, requireName bool, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	if requireName && p.Name == "" {
		errs = append(errs, field.Required(fldPath.Child("name"), ""))
	} else if p.Name != "" {
		errs = append(errs, dns1123Label(p.Name, fldPath.Child("name"))...)
	}
	for _, msg := range utilvalidation.IsValidPortNum(int(p.Port)) {
		errs = append(errs, field.Invalid(fldPath.Child("port"), p.Port, msg))
	}
	switch {
	case p.Protocol == "":
		errs = append(errs, field.Required(fldPath.Child("protocol"), ""))
	case !contains(supportedPortProtocols, p.Protocol):
		errs = append(errs, field.NotSupported(fldPath.Child("protocol"), p.Protocol, supportedPortProtocols))
	}
	return errs
}

// ReplicationController is ValidateReplicationController: a non-empty selector that matches
// the template's labels, replicas >= 0, and a template whose pods restart Always.
func ReplicationController(rc *corev1.ReplicationController) field.ErrorList {
	errs := objectMeta(&rc.ObjectMeta, apivalidation.NameIsDNSSubdomain)
	return append(errs, rcSpec(&rc.Spec, field.NewPath("spec"))...)
}

func rcSpec(s *corev1.ReplicationControllerSpec, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, apivalidation.ValidateNonnegativeField(int64(s.MinReadySeconds), fldPath.Child("minReadySeconds"))...)
	if len(s.Selector) == 0 {
		errs = append(errs, field.Required(fldPath.Child("selector"), ""))
	} else {
		errs = append(errs, metav1validation.ValidateLabels(s.Selector, fldPath.Child("selector"))...)
	}
	if s.Replicas != nil {
		errs = append(errs, apivalidation.ValidateNonnegativeField(int64(*s.Replicas), fldPath.Child("replicas"))...)
	}
	tp := fldPath.Child("template")
	if s.Template == nil {
		return append(errs, field.Required(tp, ""))
	}
	sel := labels.Set(s.Selector).AsSelector()
	if !sel.Empty() && !sel.Matches(labels.Set(s.Template.Labels)) {
		errs = append(errs, field.Invalid(tp.Child("metadata", "labels"), s.Template.Labels, "`selector` does not match template `labels`"))
	}
	errs = append(errs, podTemplateSpec(s.Template, tp)...)
	if s.Template.Spec.RestartPolicy != corev1.RestartPolicyAlways {
		errs = append(errs, field.NotSupported(tp.Child("spec", "restartPolicy"), s.Template.Spec.RestartPolicy, []corev1.RestartPolicy{corev1.RestartPolicyAlways}))
	}
	if s.Template.Spec.ActiveDeadlineSeconds != nil {
		errs = append(errs, field.Forbidden(tp.Child("spec", "activeDeadlineSeconds"), "activeDeadlineSeconds in ReplicationController is not Supported"))
	}
	return errs
}

// ReplicationControllerUpdate validates an update of a ReplicationController (old to new): metadata, immutable fields, spec.
func ReplicationControllerUpdate(rc, old *corev1.ReplicationController) field.ErrorList {
	errs := metaUpdate(&rc.ObjectMeta, &old.ObjectMeta)
	return append(errs, rcSpec(&rc.Spec, field.NewPath("spec"))...)
}

func rcStatus(s *corev1.ReplicationControllerStatus, fldPath *field.Path) field.ErrorList {
	return replicaCounts(fldPath, map[string]int64{
		"replicas": int64(s.Replicas), "fullyLabeledReplicas": int64(s.FullyLabeledReplicas), "readyReplicas": int64(s.ReadyReplicas),
		"availableReplicas": int64(s.AvailableReplicas), "observedGeneration": s.ObservedGeneration,
	}, [][2]string{{"fullyLabeledReplicas", "status.replicas"}, {"readyReplicas", "status.replicas"}, {"availableReplicas", "status.replicas"}, {"availableReplicas", "readyReplicas"}})
}

// replicaCounts checks that status counters are not negative and that each pair (a, b) has
// a <= b. b is named as Kubernetes names it in the message ("status.replicas", "readyReplicas").
func replicaCounts(fldPath *field.Path, counts map[string]int64, lessOrEqual [][2]string) field.ErrorList {
	var errs field.ErrorList
	for _, name := range sortedKeys(counts) {
		errs = append(errs, apivalidation.ValidateNonnegativeField(counts[name], fldPath.Child(name))...)
	}
	for _, pair := range lessOrEqual {
		if counts[pair[0]] > counts[strings.TrimPrefix(pair[1], "status.")] {
			errs = append(errs, field.Invalid(fldPath.Child(pair[0]), counts[pair[0]], "cannot be greater than "+pair[1]))
		}
	}
	return errs
}
