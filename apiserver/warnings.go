package apiserver

import (
	"net/http"
	"sync"

	"k8s.io/apiserver/pkg/warning"
)

// headerWarnings records the warnings that admission plug-ins and handlers add
// (k8s.io/apiserver/pkg/warning.AddWarning) as Warning headers of the response, each once, as
// kube-apiserver's warning recorder does; those added after the header is written are dropped.
type headerWarnings struct {
	w    http.ResponseWriter
	mu   sync.Mutex
	seen map[string]bool
}

var _ warning.Recorder = (*headerWarnings)(nil)

func (h *headerWarnings) AddWarning(_, text string) {
	if text == "" {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.seen[text] {
		return
	}
	if h.seen == nil {
		h.seen = map[string]bool{}
	}
	h.seen[text] = true
	setWarnings(h.w, []string{text})
}
