// Package admission assembles logplane's admission chain, which the registry runs on every
// create and update of every writer (API clients, reconcilers, node agents), in the order
// kube-apiserver runs these plug-ins: ServiceAccount (package serviceaccount: a pod's account
// and its token volume), then PodSecurity (package podsecurity: the Pod Security Standards a
// namespace's labels ask for), then DefaultIngressClass (package defaultingressclass: a new
// Ingress without a class gets the default IngressClass), then PersistentVolumeClaimResize and
// DefaultStorageClass (package storageclass: claims grow only where their class allows it; a
// claim without a class gets the default one), then StorageObjectInUseProtection (package
// storageprotection: a claim in use is not deleted under its pods).
package admission

import (
	"fmt"

	"k8s.io/apiserver/pkg/admission"
	psadmissionapi "k8s.io/pod-security-admission/admission/api"
	"k8s.io/utils/clock"

	"github.com/logplane/logplane/admission/defaultingressclass"
	"github.com/logplane/logplane/admission/podsecurity"
	"github.com/logplane/logplane/admission/serviceaccount"
	"github.com/logplane/logplane/admission/storageclass"
	"github.com/logplane/logplane/admission/storageprotection"
	"github.com/logplane/logplane/projections"
)

// Config configures the chain.
type Config struct {
	// PodSecurity is the PodSecurity plug-in's configuration (podsecurity.LoadConfiguration):
	// defaults and exemptions. Nil: Kubernetes' defaults.
	PodSecurity *psadmissionapi.PodSecurityConfiguration
	// Clock. Default: the real clock.
	Clock clock.Clock
}

// Chain returns the admission chain reading from store.
func Chain(store *projections.Store, cfg Config) (admission.Interface, error) {
	ps, err := podsecurity.New(store, cfg.PodSecurity)
	if err != nil {
		return nil, fmt.Errorf("admission: %w", err)
	}
	return admission.NewChainHandler(serviceaccount.New(store, cfg.Clock), ps, defaultingressclass.New(store),
		storageclass.NewResize(store), storageclass.NewDefault(store), storageprotection.New()), nil
}
