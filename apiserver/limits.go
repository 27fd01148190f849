package apiserver

import (
	"fmt"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The sizes of a request's head. kube-apiserver lets Go's HTTP server bound the request line
// and headers to 1 MiB (MaxHeaderBytes, k8s.io/apiserver server/secure_serving.go), which then
// answers a bare "431 Request Header Fields Too Large" that no Kubernetes client can read. Here
// the HTTP server reads heads up to readHeadBytes and the handler answers one over
// maxHeadBytes with a Status: 414 when the URL alone is too long, 431 when the headers are.
// Heads past readHeadBytes are never read (Go's 431: the connection is refused before any
// handler runs).
const (
	maxHeadBytes  = 1 << 20
	readHeadBytes = 4 << 20
)

// checkHead answers a request whose URL or headers are too large with a Status, and reports
// whether it did.
func checkHead(w http.ResponseWriter, r *http.Request) bool {
	if n := len(r.RequestURI); n > maxHeadBytes {
		writeError(w, r, headTooLarge(http.StatusRequestURITooLong, fmt.Sprintf("the request URI is %d bytes long, more than the limit of %d", n, maxHeadBytes)))
		return true
	}
	n := len(r.Method) + len(r.RequestURI) + len(r.Proto) + 4
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4 // "k: v\r\n"
		}
	}
	if n > maxHeadBytes {
		writeError(w, r, headTooLarge(http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("the request line and headers are %d bytes long, more than the limit of %d", n, maxHeadBytes)))
		return true
	}
	return false
}

func headTooLarge(code int, msg string) error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure, Code: int32(code), Reason: metav1.StatusReasonUnknown, Message: msg,
	}}
}
