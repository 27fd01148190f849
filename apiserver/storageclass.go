package apiserver

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/logplane/logplane/registry"
)

// The default StorageClass every cluster starts with: the node agents' local provisioner
// (docs/storage.md).
const (
	DefaultStorageClassName = "local"
	LocalProvisioner        = registry.LocalProvisioner
)

// defaultStorageClass creates the StorageClass `local` if it does not exist, marked default as
// Kubernetes' addon manager marks a cloud's class: a directory per volume on the node that runs
// the claim's first pod (WaitForFirstConsumer), deleted with the claim, growable.
func (s *Server) defaultStorageClass(ctx context.Context) error {
	scKind, ok := s.catalog.ByGroupResource(storagev1.Resource("storageclasses"))
	if !ok {
		return nil
	}
	if _, err := s.reg.GetObject(ctx, scKind, "", DefaultStorageClassName, registry.ReadOptions{ResourceVersion: "0"}); err == nil {
		return nil
	}
	sc := &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{Name: DefaultStorageClassName,
			Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "true"}},
		Provisioner:          LocalProvisioner,
		ReclaimPolicy:        ptr.To(corev1.PersistentVolumeReclaimDelete),
		VolumeBindingMode:    ptr.To(storagev1.VolumeBindingWaitForFirstConsumer),
		AllowVolumeExpansion: ptr.To(true),
	}
	if _, err := s.reg.Create(ctx, scKind, sc, systemActor); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("apiserver: creating the default StorageClass: %w", err)
	}
	return nil
}
