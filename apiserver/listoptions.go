package apiserver

import (
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metainternalversionscheme "k8s.io/apimachinery/pkg/apis/meta/internalversion/scheme"
	metainternalversionvalidation "k8s.io/apimachinery/pkg/apis/meta/internalversion/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// listOptions reads the query of a list, watch or deletecollection as kube-apiserver does
// (k8s.io/apiserver handlers/get.go listOpts, delete.go DeleteCollection): metav1's parameter
// conversion, so that a boolean is true unless absent, "0" or "false" (watch=maybe is a watch)
// and a number that does not parse is a 400; then ValidateListOptions, whose refusals
// (resourceVersionMatch without resourceVersion, sendInitialEvents on a list, ...) are 422s.
// The watch-list defaults (SetListOptionsDefaults) are left out: they change no validation
// result, and serveWatch applies their meaning itself. The selectors are never nil.
func listOptions(r *http.Request) (metainternalversion.ListOptions, error) {
	opts := metainternalversion.ListOptions{}
	if err := metainternalversionscheme.ParameterCodec.DecodeParameters(r.URL.Query(), metav1.SchemeGroupVersion, &opts); err != nil {
		return opts, apierrors.NewBadRequest(err.Error())
	}
	if errs := metainternalversionvalidation.ValidateListOptions(&opts, true); len(errs) > 0 {
		return opts, apierrors.NewInvalid(schema.GroupKind{Group: metav1.GroupName, Kind: "ListOptions"}, "", errs)
	}
	if opts.LabelSelector == nil {
		opts.LabelSelector = labels.Everything()
	}
	if opts.FieldSelector == nil {
		opts.FieldSelector = fields.Everything()
	}
	return opts, nil
}
