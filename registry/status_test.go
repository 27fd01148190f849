package registry_test

import (
	"errors"
	"fmt"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/registry"
)

// statusOnly is an APIStatus error that says only a reason, as some errors of libraries do.
type statusOnly struct{ st metav1.Status }

func (e statusOnly) Error() string         { return e.st.Message }
func (e statusOnly) Status() metav1.Status { return e.st }

func TestStatusOf(t *testing.T) {
	notFound := apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, "p")
	for _, tc := range []struct {
		name   string
		err    error
		code   int32
		status string
		reason metav1.StatusReason
	}{
		{"a StatusError", notFound, 404, metav1.StatusFailure, metav1.StatusReasonNotFound},
		{"a wrapped StatusError", fmt.Errorf("reading: %w", notFound), 404, metav1.StatusFailure, metav1.StatusReasonNotFound},
		{"a failure without a code", statusOnly{metav1.Status{Reason: metav1.StatusReasonConflict}}, 500, metav1.StatusFailure, metav1.StatusReasonConflict},
		{"a success without a code", statusOnly{metav1.Status{Status: metav1.StatusSuccess}}, 200, metav1.StatusSuccess, ""},
		{"any other error", errors.New("disk on fire"), 500, metav1.StatusFailure, metav1.StatusReasonInternalError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := registry.StatusOf(tc.err)
			if st.Kind != "Status" || st.APIVersion != "v1" || st.Code != tc.code || st.Status != tc.status || st.Reason != tc.reason {
				t.Fatalf("%+v", st)
			}
		})
	}
}
