package apiserver_test

import (
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/logplane/logplane/admission"
	"github.com/logplane/logplane/apiserver"
	"github.com/logplane/logplane/apiserver/apiservertest"
)

// The API server makes the IngressClass "logplane", marked default; the DefaultIngressClass
// admission gives it to a new Ingress that names no class (not to one with a class or the
// deprecated annotation, not on update), the newest default class winning; a bad Ingress
// gets Kubernetes' 422 and nothing is written.
func TestIngressClassDefaulting(t *testing.T) {
	s := apiservertest.Start(t, apiservertest.Options{Admission: &admission.Config{}})
	cs := clientset(t, s)
	ctx := t.Context()
	ic, err := cs.NetworkingV1().IngressClasses().Get(ctx, apiserver.DefaultIngressClassName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ic.Spec.Controller != "logplane.io/ingress" || ic.Annotations[networkingv1.AnnotationIsDefaultIngressClass] != "true" {
		t.Errorf("default IngressClass: %+v", ic)
	}
	ing := func(name string, mutate func(*networkingv1.Ingress)) *networkingv1.Ingress {
		pt := networkingv1.PathTypePrefix
		in := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: networkingv1.IngressSpec{
			Rules: []networkingv1.IngressRule{{Host: "foo.example.com", IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
				Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: &pt, Backend: networkingv1.IngressBackend{
					Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}}}}}}}}}
		if mutate != nil {
			mutate(in)
		}
		return in
	}
	create := func(in *networkingv1.Ingress) *networkingv1.Ingress {
		t.Helper()
		out, err := cs.NetworkingV1().Ingresses("default").Create(ctx, in, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := create(ing("plain", nil)); ptr.Deref(got.Spec.IngressClassName, "") != "logplane" {
		t.Errorf("no class: got class %v, want logplane", got.Spec.IngressClassName)
	}
	if got := create(ing("named", func(i *networkingv1.Ingress) { i.Spec.IngressClassName = ptr.To("other") })); *got.Spec.IngressClassName != "other" {
		t.Errorf("named class: got %v", *got.Spec.IngressClassName)
	}
	annotated := create(ing("annotated", func(i *networkingv1.Ingress) {
		i.Annotations = map[string]string{"kubernetes.io/ingress.class": "nginx"}
	}))
	if annotated.Spec.IngressClassName != nil {
		t.Errorf("annotated: got class %v, want none", *annotated.Spec.IngressClassName)
	}
	// Not on update.
	annotated.Annotations = nil
	upd, err := cs.NetworkingV1().Ingresses("default").Update(ctx, annotated, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if upd.Spec.IngressClassName != nil {
		t.Errorf("updated: got class %v, want none", *upd.Spec.IngressClassName)
	}
	// A newer default class wins (or, created in the same second, the first by name).
	if _, err := cs.NetworkingV1().IngressClasses().Create(ctx, &networkingv1.IngressClass{
		ObjectMeta: metav1.ObjectMeta{Name: "a-newer", Annotations: map[string]string{networkingv1.AnnotationIsDefaultIngressClass: "true"}},
		Spec:       networkingv1.IngressClassSpec{Controller: "example.com/ingress"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := create(ing("after-newer", nil)); ptr.Deref(got.Spec.IngressClassName, "") != "a-newer" {
		t.Errorf("two defaults: got class %v, want a-newer", got.Spec.IngressClassName)
	}

	// 422 with Kubernetes' messages; nothing written.
	_, err = cs.NetworkingV1().Ingresses("default").Create(ctx, ing("bad", func(i *networkingv1.Ingress) {
		i.Spec.Rules[0].HTTP.Paths[0].Path = "foo"
	}), metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), `spec.rules[0].http.paths[0].path: Invalid value: "foo": must be an absolute path`) {
		t.Errorf("relative path: %v, want 422 must be an absolute path", err)
	}
	_, err = cs.NetworkingV1().Ingresses("default").Create(ctx, ing("bad", func(i *networkingv1.Ingress) {
		i.Spec.Rules[0].HTTP.Paths[0].PathType = nil
	}), metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), `spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified`) {
		t.Errorf("no pathType: %v, want 422", err)
	}
	if _, err := cs.NetworkingV1().Ingresses("default").Get(ctx, "bad", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("refused Ingress: get %v, want not found", err)
	}
	_, err = cs.NetworkingV1().IngressClasses().Create(ctx, &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "bad"},
		Spec: networkingv1.IngressClassSpec{Controller: "nodomain"}}, metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), `must be a domain-prefixed path`) {
		t.Errorf("bad controller: %v, want 422", err)
	}
}
