package registry

import (
	"errors"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// StatusOf is the Kubernetes Status that answers err, for every server that answers Kubernetes
// clients (the API server's handlers and watches, the node agent's streaming server): the Status
// of an apimachinery APIStatus error, wrapped or not, completed as kube-apiserver's
// ErrorToAPIStatus completes it (a failure without a code is a 500, a success a 200); any other
// error is a 500 InternalError.
func StatusOf(err error) *metav1.Status {
	var st metav1.Status
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		st = se.Status()
	} else {
		st = apierrors.NewInternalError(err).ErrStatus
	}
	if st.Status == "" {
		st.Status = metav1.StatusFailure
	}
	if st.Code == 0 {
		st.Code = http.StatusInternalServerError
		if st.Status == metav1.StatusSuccess {
			st.Code = http.StatusOK
		}
	}
	st.Kind, st.APIVersion = "Status", "v1"
	return &st
}
