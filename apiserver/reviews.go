package apiserver

import (
	"fmt"
	"net/http"

	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

// The access reviews of authorization.k8s.io/v1, as Kubernetes' pkg/registry/authorization
// serves them (create only; nothing is stored): SubjectAccessReview and
// LocalSubjectAccessReview ask about anyone, SelfSubjectAccessReview about the requester
// (`kubectl auth can-i`), SelfSubjectRulesReview lists the requester's rules in a namespace
// (`kubectl auth can-i --list`). Who may create them is authorized like any create
// (system:basic-user has the self reviews).

// reviewRoute serves an access review path, if path is one.
func (s *Server) reviewRoute(w http.ResponseWriter, r *http.Request, info requestInfo) bool {
	if info.group != authorizationv1.GroupName || info.version != "v1" || info.name != "" || info.subresource != "" {
		return false
	}
	var serve func(http.ResponseWriter, *http.Request, requestInfo)
	switch {
	case info.resource == "subjectaccessreviews" && info.namespace == "":
		serve = s.serveSubjectAccessReview
	case info.resource == "selfsubjectaccessreviews" && info.namespace == "":
		serve = s.serveSelfSubjectAccessReview
	case info.resource == "selfsubjectrulesreviews" && info.namespace == "":
		serve = s.serveSelfSubjectRulesReview
	case info.resource == "localsubjectaccessreviews" && info.namespace != "":
		serve = s.serveLocalSubjectAccessReview
	default:
		return false
	}
	if r.Method != http.MethodPost {
		writeError(w, r, apierrors.NewMethodNotSupported(schema.GroupResource{Group: authorizationv1.GroupName, Resource: info.resource}, info.verb))
		return true
	}
	serve(w, r, info)
	return true
}

func reviewGVK(kind string) schema.GroupVersionKind {
	return authorizationv1.SchemeGroupVersion.WithKind(kind)
}

func (s *Server) serveSubjectAccessReview(w http.ResponseWriter, r *http.Request, _ requestInfo) {
	sar := &authorizationv1.SubjectAccessReview{}
	if _, _, err := s.decodeObjectAs(r, reviewGVK("SubjectAccessReview"), sar); err != nil {
		writeError(w, r, err)
		return
	}
	errs := reviewMeta(&sar.ObjectMeta)
	errs = append(errs, reviewSpec(&sar.Spec, field.NewPath("spec"))...)
	if sar.Spec.User == "" && len(sar.Spec.Groups) == 0 {
		errs = append(errs, field.Invalid(field.NewPath("spec", "user"), sar.Spec.User, "at least one of user or group must be specified"))
	}
	if len(errs) > 0 {
		writeError(w, r, apierrors.NewInvalid(authorizationv1.SchemeGroupVersion.WithKind("SubjectAccessReview").GroupKind(), "", errs))
		return
	}
	sar.Status = s.decide(r, sar.Spec)
	sar.Kind, sar.APIVersion = "SubjectAccessReview", authorizationv1.SchemeGroupVersion.String()
	writeObject(w, r, http.StatusCreated, negotiateOr(r), sar)
}

func (s *Server) serveLocalSubjectAccessReview(w http.ResponseWriter, r *http.Request, info requestInfo) {
	sar := &authorizationv1.LocalSubjectAccessReview{}
	if _, _, err := s.decodeObjectAs(r, reviewGVK("LocalSubjectAccessReview"), sar); err != nil {
		writeError(w, r, err)
		return
	}
	errs := reviewSpec(&sar.Spec, field.NewPath("spec"))
	if sar.Spec.User == "" && len(sar.Spec.Groups) == 0 {
		errs = append(errs, field.Invalid(field.NewPath("spec", "user"), sar.Spec.User, "at least one of user or group must be specified"))
	}
	if sar.Spec.NonResourceAttributes != nil {
		errs = append(errs, field.Invalid(field.NewPath("spec", "nonResourceAttributes"), sar.Spec.NonResourceAttributes, "disallowed on this kind of request"))
	}
	if sar.Spec.ResourceAttributes != nil && sar.Spec.ResourceAttributes.Namespace != sar.Namespace {
		errs = append(errs, field.Invalid(field.NewPath("spec", "resourceAttributes", "namespace"), sar.Spec.ResourceAttributes.Namespace, "must match metadata.namespace"))
	}
	if len(errs) > 0 {
		writeError(w, r, apierrors.NewInvalid(reviewGVK("LocalSubjectAccessReview").GroupKind(), "", errs))
		return
	}
	if sar.Namespace != info.namespace {
		writeError(w, r, apierrors.NewBadRequest(fmt.Sprintf("spec.resourceAttributes.namespace must match namespace: %v", info.namespace)))
		return
	}
	sar.Status = s.decide(r, sar.Spec)
	sar.Kind, sar.APIVersion = "LocalSubjectAccessReview", authorizationv1.SchemeGroupVersion.String()
	writeObject(w, r, http.StatusCreated, negotiateOr(r), sar)
}

func (s *Server) serveSelfSubjectAccessReview(w http.ResponseWriter, r *http.Request, _ requestInfo) {
	sar := &authorizationv1.SelfSubjectAccessReview{}
	if _, _, err := s.decodeObjectAs(r, reviewGVK("SelfSubjectAccessReview"), sar); err != nil {
		writeError(w, r, err)
		return
	}
	errs := reviewMeta(&sar.ObjectMeta)
	errs = append(errs, reviewAttributes(sar.Spec.ResourceAttributes, sar.Spec.NonResourceAttributes, field.NewPath("spec"))...)
	if len(errs) > 0 {
		writeError(w, r, apierrors.NewInvalid(reviewGVK("SelfSubjectAccessReview").GroupKind(), "", errs))
		return
	}
	u := userFrom(r.Context())
	spec := authorizationv1.SubjectAccessReviewSpec{ResourceAttributes: sar.Spec.ResourceAttributes,
		NonResourceAttributes: sar.Spec.NonResourceAttributes, User: u.GetName(), Groups: u.GetGroups(), UID: u.GetUID()}
	for k, v := range u.GetExtra() {
		if spec.Extra == nil {
			spec.Extra = map[string]authorizationv1.ExtraValue{}
		}
		spec.Extra[k] = v
	}
	sar.Status = s.decide(r, spec)
	sar.Kind, sar.APIVersion = "SelfSubjectAccessReview", authorizationv1.SchemeGroupVersion.String()
	writeObject(w, r, http.StatusCreated, negotiateOr(r), sar)
}

func (s *Server) serveSelfSubjectRulesReview(w http.ResponseWriter, r *http.Request, _ requestInfo) {
	rr := &authorizationv1.SelfSubjectRulesReview{}
	if _, _, err := s.decodeObjectAs(r, reviewGVK("SelfSubjectRulesReview"), rr); err != nil {
		writeError(w, r, err)
		return
	}
	if rr.Spec.Namespace == "" {
		writeError(w, r, apierrors.NewBadRequest("no namespace on request"))
		return
	}
	u := userFrom(r.Context())
	var (
		res    []authorizer.ResourceRuleInfo
		nonres []authorizer.NonResourceRuleInfo
		err    error
	)
	if s.cfg.AuthorizeAll {
		res = []authorizer.ResourceRuleInfo{&authorizer.DefaultResourceRuleInfo{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"}}}
		nonres = []authorizer.NonResourceRuleInfo{&authorizer.DefaultNonResourceRuleInfo{Verbs: []string{"*"}, NonResourceURLs: []string{"*"}}}
	} else {
		res, nonres, _, err = s.rbac.RulesFor(r.Context(), u, rr.Spec.Namespace)
	}
	out := &authorizationv1.SelfSubjectRulesReview{Spec: rr.Spec, Status: authorizationv1.SubjectRulesReviewStatus{
		ResourceRules: []authorizationv1.ResourceRule{}, NonResourceRules: []authorizationv1.NonResourceRule{}}}
	for _, x := range res {
		out.Status.ResourceRules = append(out.Status.ResourceRules, authorizationv1.ResourceRule{Verbs: x.GetVerbs(),
			APIGroups: x.GetAPIGroups(), Resources: x.GetResources(), ResourceNames: x.GetResourceNames()})
	}
	for _, x := range nonres {
		out.Status.NonResourceRules = append(out.Status.NonResourceRules, authorizationv1.NonResourceRule{Verbs: x.GetVerbs(),
			NonResourceURLs: x.GetNonResourceURLs()})
	}
	if err != nil {
		out.Status.EvaluationError = err.Error()
	}
	out.Kind, out.APIVersion = "SelfSubjectRulesReview", authorizationv1.SchemeGroupVersion.String()
	writeObject(w, r, http.StatusCreated, negotiateOr(r), out)
}

// decide answers a review's question with the server's authorizer.
func (s *Server) decide(r *http.Request, spec authorizationv1.SubjectAccessReviewSpec) authorizationv1.SubjectAccessReviewStatus {
	u := &user.DefaultInfo{Name: spec.User, Groups: spec.Groups, UID: spec.UID}
	for k, v := range spec.Extra {
		if u.Extra == nil {
			u.Extra = map[string][]string{}
		}
		u.Extra[k] = v
	}
	var attrs authorizer.AttributesRecord
	if ra := spec.ResourceAttributes; ra != nil {
		version := ra.Version
		if version == "" {
			version = "*"
		}
		attrs = authorizer.AttributesRecord{User: u, Verb: ra.Verb, Namespace: ra.Namespace, APIGroup: ra.Group, APIVersion: version,
			Resource: ra.Resource, Subresource: ra.Subresource, Name: ra.Name, ResourceRequest: true}
	} else {
		attrs = authorizer.AttributesRecord{User: u, Verb: spec.NonResourceAttributes.Verb, Path: spec.NonResourceAttributes.Path}
	}
	d, reason, err := s.authz.Authorize(r.Context(), attrs)
	st := authorizationv1.SubjectAccessReviewStatus{Allowed: d == authorizer.DecisionAllow, Denied: d == authorizer.DecisionDeny, Reason: reason}
	if err != nil {
		st.EvaluationError = err.Error()
	}
	return st
}

// reviewMeta is Kubernetes' check that a review's metadata is empty (but managed fields).
func reviewMeta(m *metav1.ObjectMeta) field.ErrorList {
	c := *m
	c.ManagedFields = nil
	if !equality.Semantic.DeepEqual(metav1.ObjectMeta{}, c) {
		return field.ErrorList{field.Invalid(field.NewPath("metadata"), m, `must be empty`)}
	}
	return nil
}

func reviewSpec(spec *authorizationv1.SubjectAccessReviewSpec, p *field.Path) field.ErrorList {
	return reviewAttributes(spec.ResourceAttributes, spec.NonResourceAttributes, p)
}

// reviewAttributes is Kubernetes' check that exactly one of the two is given.
func reviewAttributes(ra *authorizationv1.ResourceAttributes, nra *authorizationv1.NonResourceAttributes, p *field.Path) field.ErrorList {
	switch {
	case ra != nil && nra != nil:
		return field.ErrorList{field.Invalid(p.Child("nonResourceAttributes"), nra, `cannot be specified in combination with resourceAttributes`)}
	case ra == nil && nra == nil:
		return field.ErrorList{field.Required(p.Child("resourceAttributes"), `exactly one of nonResourceAttributes or resourceAttributes must be specified`)}
	}
	return nil
}
