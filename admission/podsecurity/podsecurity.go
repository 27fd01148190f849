// Package podsecurity is Kubernetes' PodSecurity admission plug-in
// (plugin/pkg/admission/security/podsecurity) over logplane's projection, delegating to
// k8s.io/pod-security-admission's admission and policy evaluator: the levels (privileged,
// baseline, restricted) a namespace's pod-security.kubernetes.io/enforce|audit|warn[-version]
// labels ask for are checked on pod creates and updates (enforce refuses with 403 Forbidden and
// Kubernetes' message; warn adds Warning headers; audit adds audit annotations, which the
// registry records in the write's event), on workloads' pod templates (warn and audit only, as
// Kubernetes), and on namespace label changes (invalid labels refused, existing pods that would
// violate a stricter enforce level reported as warnings). Defaults and exemptions (users,
// namespaces, runtime classes) come from a PodSecurityConfiguration, as kube-apiserver's
// admission configuration file gives it.
package podsecurity

import (
	"context"
	"errors"
	"fmt"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/warning"
	psadmission "k8s.io/pod-security-admission/admission"
	psadmissionapi "k8s.io/pod-security-admission/admission/api"
	"k8s.io/pod-security-admission/admission/api/load"
	psapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/metrics"
	"k8s.io/pod-security-admission/policy"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/projections"
)

// PluginName is the plug-in's name in kube-apiserver's --enable-admission-plugins.
const PluginName = "PodSecurity"

// store is what the plug-in reads.
type store interface {
	Get(key eventlog.Key) (*projections.Object, bool)
	List(q projections.Query) ([]*projections.Object, uint64)
}

var _ store = (*projections.Store)(nil)

// Plugin is the PodSecurity admission plug-in.
type Plugin struct {
	*admission.Handler
	delegate *psadmission.Admission
}

var _ admission.ValidationInterface = (*Plugin)(nil)

// LoadConfiguration reads a PodSecurityConfiguration (pod-security.admission.config.k8s.io
// v1, v1beta1 or v1alpha1, as in kube-apiserver's admission configuration); empty data gives
// Kubernetes' defaults (privileged everywhere a namespace says nothing, no exemptions).
func LoadConfiguration(data []byte) (*psadmissionapi.PodSecurityConfiguration, error) {
	c, err := load.LoadFromData(data)
	if err != nil {
		return nil, fmt.Errorf("podsecurity: configuration: %w", err)
	}
	return c, nil
}

// New returns the plug-in over s with configuration c (nil: the defaults).
func New(s store, c *psadmissionapi.PodSecurityConfiguration) (*Plugin, error) {
	if c == nil {
		var err error
		if c, err = LoadConfiguration(nil); err != nil {
			return nil, err
		}
	}
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		return nil, fmt.Errorf("podsecurity: could not create PodSecurityRegistry: %w", err)
	}
	d := &psadmission.Admission{
		Configuration:    c,
		Evaluator:        evaluator,
		Metrics:          noMetrics{},
		PodSpecExtractor: psadmission.DefaultPodSpecExtractor{},
		NamespaceGetter:  namespaces{s},
		PodLister:        pods{s},
	}
	if err := d.CompleteConfiguration(); err != nil {
		return nil, fmt.Errorf("podsecurity: configuration error: %w", err)
	}
	if err := d.ValidateConfiguration(); err != nil {
		return nil, fmt.Errorf("podsecurity: invalid: %w", err)
	}
	return &Plugin{Handler: admission.NewHandler(admission.Create, admission.Update), delegate: d}, nil
}

// Validate is kube-apiserver's plug-in's: the delegate's warnings go to the request's warning
// recorder, its audit annotations (prefixed pod-security.kubernetes.io/) into the attributes, and
// a denial becomes a 403 with the delegate's message.
func (p *Plugin) Validate(ctx context.Context, a admission.Attributes, _ admission.ObjectInterfaces) error {
	gr := a.GetResource().GroupResource()
	if gr != corev1.Resource("pods") && gr != corev1.Resource("namespaces") && !p.delegate.PodSpecExtractor.HasPodSpec(gr) {
		return nil
	}
	result := p.delegate.Validate(ctx, attributes{a})
	for _, w := range result.Warnings {
		warning.AddWarning(ctx, "", w)
	}
	for k, v := range result.AuditAnnotations {
		if err := a.AddAnnotation(psapi.AuditAnnotationPrefix+k, v); err != nil {
			return apierrors.NewInternalError(err)
		}
	}
	if !result.Allowed {
		out := admission.NewForbidden(a, errors.New("Not allowed by PodSecurity")).(*apierrors.StatusError)
		if r := result.Result; r != nil {
			if r.Message != "" {
				out.ErrStatus.Message = r.Message
			}
			if r.Reason != "" {
				out.ErrStatus.Reason = r.Reason
			}
			if r.Details != nil {
				out.ErrStatus.Details = r.Details
			}
			if r.Code != 0 {
				out.ErrStatus.Code = r.Code
			}
		}
		return out
	}
	return nil
}

// attributes are k8s.io/apiserver's admission attributes as pod-security-admission reads them
// (objects are already the v1 types it wants).
type attributes struct{ admission.Attributes }

var _ psapi.Attributes = attributes{}

func (a attributes) GetObject() (runtime.Object, error)    { return a.Attributes.GetObject(), nil }
func (a attributes) GetOldObject() (runtime.Object, error) { return a.Attributes.GetOldObject(), nil }
func (a attributes) GetOperation() admissionv1.Operation {
	return admissionv1.Operation(a.Attributes.GetOperation())
}
func (a attributes) GetUserName() string { return a.GetUserInfo().GetName() }

// namespaces reads namespaces' labels (all the policy needs) from the projection's index,
// without decoding the namespace.
type namespaces struct{ s store }

func (n namespaces) GetNamespace(_ context.Context, name string) (*corev1.Namespace, error) {
	o, ok := n.s.Get(eventlog.Key{Resource: "namespaces", Name: name})
	if !ok {
		return nil, apierrors.NewNotFound(corev1.Resource("namespaces"), name)
	}
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: o.Labels}}, nil
}

// pods lists a namespace's pods, for the warnings of a stricter enforce level.
type pods struct{ s store }

func (p pods) ListPods(_ context.Context, namespace string) ([]*corev1.Pod, error) {
	objs, _ := p.s.List(projections.Query{Resource: corev1.Resource("pods"), Namespace: namespace})
	out := make([]*corev1.Pod, 0, len(objs))
	for _, o := range objs {
		obj, err := o.Decode()
		if err != nil {
			return nil, err
		}
		if pod, ok := obj.(*corev1.Pod); ok {
			out = append(out, pod)
		}
	}
	return out, nil
}

// noMetrics records nothing: logplane does not export pod security metrics yet.
type noMetrics struct{}

func (noMetrics) RecordEvaluation(metrics.Decision, psapi.LevelVersion, metrics.Mode, psapi.Attributes) {
}
func (noMetrics) RecordExemption(psapi.Attributes)   {}
func (noMetrics) RecordError(bool, psapi.Attributes) {}
