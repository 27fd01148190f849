// Package defaultingressclass is Kubernetes' DefaultIngressClass admission plug-in
// (plugin/pkg/admission/network/defaultingressclass) over logplane's projection: a new Ingress
// that names no class (neither spec.ingressClassName nor the deprecated
// kubernetes.io/ingress.class annotation) gets the name of the IngressClass annotated
// ingressclass.kubernetes.io/is-default-class: "true" — the newest such class when there are
// several, then the first by name, as Kubernetes chooses. Nothing changes when there is none.
package defaultingressclass

import (
	"context"
	"fmt"
	"slices"

	networkingv1 "k8s.io/api/networking/v1"
	networkingv1beta1 "k8s.io/api/networking/v1beta1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"

	"github.com/logplane/logplane/projections"
)

// PluginName is the plug-in's name in kube-apiserver's --enable-admission-plugins.
const PluginName = "DefaultIngressClass"

// store is what the plug-in reads.
type store interface {
	List(q projections.Query) ([]*projections.Object, uint64)
}

var _ store = (*projections.Store)(nil)

var (
	ingresses      = networkingv1.Resource("ingresses")
	ingressClasses = schema.GroupResource{Group: networkingv1.GroupName, Resource: "ingressclasses"}
)

// Plugin is the DefaultIngressClass admission plug-in.
type Plugin struct {
	*admission.Handler
	store store
}

var _ admission.MutationInterface = (*Plugin)(nil)

// New returns the plug-in reading IngressClasses from s.
func New(s store) *Plugin {
	return &Plugin{Handler: admission.NewHandler(admission.Create), store: s}
}

// Admit sets the default class of a new Ingress that names none.
func (p *Plugin) Admit(_ context.Context, a admission.Attributes, _ admission.ObjectInterfaces) error {
	if a.GetResource().GroupResource() != ingresses || a.GetSubresource() != "" {
		return nil
	}
	ing, ok := a.GetObject().(*networkingv1.Ingress)
	if !ok || ing == nil {
		return fmt.Errorf("defaultingressclass: expected an Ingress, got %T", a.GetObject())
	}
	if ing.Spec.IngressClassName != nil {
		return nil
	}
	if _, ok := ing.Annotations[networkingv1beta1.AnnotationIngressClass]; ok {
		return nil
	}
	def, err := p.defaultClass()
	if err != nil {
		return admission.NewForbidden(a, err)
	}
	if def != nil {
		ing.Spec.IngressClassName = &def.Name
	}
	return nil
}

// defaultClass is the newest IngressClass marked default (then the first by name), or nil.
func (p *Plugin) defaultClass() (*networkingv1.IngressClass, error) {
	objs, _ := p.store.List(projections.Query{Resource: ingressClasses})
	var defaults []*networkingv1.IngressClass
	for _, o := range objs {
		obj, err := o.Decode()
		if err != nil {
			return nil, fmt.Errorf("defaultingressclass: %w", err)
		}
		ic, ok := obj.(*networkingv1.IngressClass)
		if ok && ic.Annotations[networkingv1.AnnotationIsDefaultIngressClass] == "true" {
			defaults = append(defaults, ic)
		}
	}
	if len(defaults) == 0 {
		return nil, nil
	}
	slices.SortFunc(defaults, func(a, b *networkingv1.IngressClass) int {
		if c := b.CreationTimestamp.UnixNano() - a.CreationTimestamp.UnixNano(); c != 0 {
			if c < 0 {
				return -1
			}
			return 1
		}
		if a.Name < b.Name {
			return -1
		}
		return 1
	})
	return defaults[0], nil
}
